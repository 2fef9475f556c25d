"""What the nginx router writes and runs, as data: the rendered upstream and status server, the generation,
reading back servers and status answers, and telling this nginx's old workers from new ones and from
other nginx instances in `ps`."""

from __future__ import annotations

import pytest

from shipyard.commands.nginx import (
    STATUS_PATH,
    Server,
    config_test_argv,
    error_line,
    generation,
    old_workers,
    parse_response,
    parse_servers,
    parse_status,
    ps_argv,
    reload_argv,
    render,
    status_request,
    still_accepting,
    upstream_block,
    workers,
)


def test_weights_become_server_lines_and_weight_zero_is_not_listed() -> None:
    block = upstream_block("api", [Server("10.0.0.1:8080", 3, "r1", "i-1"), Server("10.0.0.2:8080", 0),
                                   Server("[::1]:9000", 1, "r 2", "")])
    assert block.splitlines() == [
        "upstream api {",
        "    server 10.0.0.1:8080 weight=3 max_fails=0; # r1 i-1",
        "    server [::1]:9000 weight=1 max_fails=0; # r_2 -",
        "    keepalive 16;",
        "}",
    ]


def test_nothing_serving_is_one_down_server_not_an_empty_upstream() -> None:
    block = upstream_block("api", [Server("10.0.0.1:8080", 0)])
    assert "server 127.0.0.1:9 down;" in block and "weight=" not in block


@pytest.mark.parametrize(("upstream", "address"), [
    ("api; include /etc/passwd", "10.0.0.1:80"), ("api", "10.0.0.1"), ("api", "10.0.0.1:0"),
    ("api", "10.0.0.1:80; server evil:1"), ("api", "host name:80"), ("", "10.0.0.1:80"),
])
def test_names_and_addresses_that_would_inject_config_are_refused(upstream: str, address: str) -> None:
    with pytest.raises(ValueError):
        upstream_block(upstream, [Server(address, 1)])


def test_the_generation_hashes_what_serves_not_labels_or_order() -> None:
    a, b = Server("10.0.0.1:80", 2, "r1", "i1"), Server("10.0.0.2:80", 1, "r1", "i2")
    assert generation([a, b]) == generation([Server("10.0.0.2:80", 1, "r9", "x"), Server("10.0.0.1:80", 2)])
    assert generation([a, b]) == generation([a, b, Server("10.0.0.3:80", 0)])
    assert generation([a, b]) != generation([a, Server("10.0.0.2:80", 2)])
    assert len(generation([])) == 16


def test_render_answers_the_generation_and_the_worker_pid_on_the_status_server() -> None:
    text, gen = render("api", [Server("10.0.0.1:80", 5, "rev", "i-1")], "127.0.0.1:8099")
    assert "listen 127.0.0.1:8099;" in text
    assert f'location = {STATUS_PATH} {{ default_type text/plain; return 200 "{gen} $pid\\n"; }}' in text
    assert parse_servers(text) == [Server("10.0.0.1:80", 5, "rev", "i-1")]
    with pytest.raises(ValueError):
        render("api", [], "127.0.0.1")


def test_status_answers_are_parsed_or_refused() -> None:
    assert parse_status("0123456789abcdef 4242") == ("0123456789abcdef", 4242)
    assert parse_status("0123456789abcdef") == ("0123456789abcdef", None)
    assert parse_status("<html>welcome to nginx</html>") is None and parse_status("") is None
    ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n0123456789abcdef 7\n"
    assert parse_response(ok) == "0123456789abcdef 7"
    assert parse_response(b"HTTP/1.1 404 Not Found\r\n\r\nnope") is None
    assert parse_response(b"HTTP/1.1 200 OK\r\n") is None          # cut before the body
    assert status_request("127.0.0.1:8099").startswith(f"GET {STATUS_PATH} HTTP/1.0\r\nHost: 127.0.0.1:8099".encode())


PS = """\
    1     0 /sbin/init
  100     1 nginx: master process /usr/sbin/nginx -c /srv/a/nginx.conf
  101   100 nginx: worker process is shutting down
  102   100 nginx: worker process
  103   100 nginx: worker process
  104   100 nginx: cache manager process
  200     1 nginx: master process /usr/sbin/nginx -c /srv/b/nginx.conf
  201   200 nginx: worker process is shutting down
  202   200 nginx: worker process
"""


def test_workers_are_the_children_of_the_answering_workers_master_only() -> None:
    assert workers(PS, 103) == (100, {101: True, 102: False, 103: False})
    assert workers(PS, 202) == (200, {201: True, 202: False})
    assert workers(PS, 999) == (None, {})                       # that worker exited meanwhile
    assert ps_argv() == ["ps", "-eo", "pid=,ppid=,args="]


def test_old_workers_are_the_shutting_down_and_the_ones_from_before_the_reload() -> None:
    _, kids = workers(PS, 103)
    assert old_workers(kids, set()) == 1
    assert old_workers(kids, {101, 102}) == 2                    # 102 not yet told to shut down
    assert still_accepting(kids, {101, 102}) == 1
    assert still_accepting(kids, {101}) == 0 and still_accepting(kids, set()) == 0


def test_commands_are_argv() -> None:
    assert config_test_argv("/usr/sbin/nginx", "/etc/nginx/nginx.conf") == ["/usr/sbin/nginx", "-t", "-q", "-c",
                                                                     "/etc/nginx/nginx.conf"]
    assert reload_argv("nginx", "/x y/nginx.conf") == ["nginx", "-s", "reload", "-c", "/x y/nginx.conf"]


def test_the_error_line_is_nginxs_reason_not_its_summary() -> None:
    out = ('2026/12/02 13:58:16 [emerg] 22223#22223: unknown directive "bogus" in /etc/nginx/nginx.conf:2\n'
           "nginx: configuration file /etc/nginx/nginx.conf test failed\n")
    assert error_line(out, 1) == '[emerg] unknown directive "bogus" in /etc/nginx/nginx.conf:2'
    assert error_line('nginx: [emerg] host not found in upstream "x:1" in /a.conf:3\n', 1) == \
        '[emerg] host not found in upstream "x:1" in /a.conf:3'
    assert error_line("sh: 1: cannot create /etc/x.conf: Permission denied\n", 2) == \
        "sh: 1: cannot create /etc/x.conf: Permission denied"
    assert error_line("", 127) == "exit 127"
