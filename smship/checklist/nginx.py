"""Reading ``nginx -T``: does every proxied location of the site forward the client's scheme and address?

nginx inherits ``proxy_set_header`` from the enclosing level only when a
level sets none of its own, which this reading follows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

WANTED = ("X-Forwarded-Proto", "X-Forwarded-For")
_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|[{};]|[^\s{};"\']+')


@dataclass
class Block:
    name: str
    args: list[str]
    children: list["Block"] = field(default_factory=list)


def parse(text: str) -> Block:
    """A tree of directives; comments dropped, quotes kept off values."""
    root = Block("", [])
    stack, words = [root], []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0] if not raw.lstrip().startswith("#") else ""
        for token in _TOKEN.findall(line):
            if token == "{":
                block = Block(words[0] if words else "", [w.strip("\"'") for w in words[1:]])
                stack[-1].children.append(block)
                stack.append(block)
                words = []
            elif token == ";":
                if words:
                    stack[-1].children.append(Block(words[0], [w.strip("\"'") for w in words[1:]]))
                words = []
            elif token == "}":
                if len(stack) > 1:
                    stack.pop()
                words = []
            else:
                words.append(token)
    return root


def _headers(block: Block, inherited: set[str]) -> set[str]:
    own = {c.args[0].lower() for c in block.children if c.name == "proxy_set_header" and c.args}
    return own if own else inherited


def _servers(root: Block):
    for child in root.children:
        if child.name == "server":
            yield child
        elif child.children:
            yield from _servers(child)


def _proxied_locations(block: Block, inherited: set[str]):
    """(location args, headers in force) for each location that proxies."""
    for child in block.children:
        if child.name == "location":
            headers = _headers(child, inherited)
            if any(c.name == "proxy_pass" for c in child.children):
                yield " ".join(child.args), headers
            yield from _proxied_locations(child, headers)


def forwards_headers(text: str, domain: str) -> str | None:
    """None when the site's HTTPS server forwards both headers everywhere it proxies; else the problem."""
    root = parse(text)
    http = next((c for c in root.children if c.name == "http"), root)
    at_http = _headers(http, set())
    servers = [s for s in _servers(root)
               if any(c.name == "server_name" and domain in c.args for c in s.children)
               and any(c.name == "listen" and any(a.startswith("443") or a.endswith(":443") for a in c.args)
                       for c in s.children)]
    if not servers:
        return f"has no HTTPS server for {domain}"
    problems = []
    for server in servers:
        proxied = list(_proxied_locations(server, _headers(server, at_http)))
        if not proxied:
            problems.append(f"the HTTPS server for {domain} proxies nothing")
        for where, headers in proxied:
            missing = [h for h in WANTED if h.lower() not in headers]
            if missing:
                problems.append(f"location {where} does not set {' and '.join(missing)}")
    return "; ".join(problems) or None
