"""The thin synchronous CLI: parse arguments, call the async core, render. One module per noun."""
