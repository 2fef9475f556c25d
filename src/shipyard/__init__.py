"""shipyard: self-hosted continuous delivery for teams with many service repos."""

import warnings

__version__ = "0.1.0"

# cryptography (48 and later) warns when asyncssh merely imports its DSA support, which shipyard never uses
# (host and user keys are Ed25519, ECDSA or RSA). Unfiltered, the warning would open the stderr of every
# command that touches SSH, ahead of the one line a user should read. Only that message, only from asyncssh.
warnings.filterwarnings("ignore", message="DSA is deprecated", module=r"asyncssh(\.|$)")
