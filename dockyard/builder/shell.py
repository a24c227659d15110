"""Dockerfile word processing: quotes, the escape character and variable expansion.

`expand` is the Dockerfile reference's substitution for one word: `$VAR`, `${VAR}`,
`${VAR:-default}`, `${VAR-default}`, `${VAR:+alt}`, `${VAR+alt}`, `${VAR:?message}`, quotes
removed, `\\$` for a literal dollar. `split_words` splits ENV/LABEL/ARG arguments on blanks
outside quotes, keeping the quotes for `expand` to handle.
"""

from __future__ import annotations

from collections.abc import Mapping

from dockyard.builder.errors import BuildError


class ExpansionError(BuildError):
    pass


def _is_name_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        self.pos += 1 if ch else 0
        return ch

    def word(self, stop: str = "") -> str:
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.peek()
            if stop and ch == stop:
                return "".join(out)
            self.pos += 1
            if ch == self.escape:
                following = self.next()
                out.append(following if following else ch)
            elif ch == "'":
                out.append(self.single_quoted())
            elif ch == '"':
                out.append(self.double_quoted())
            elif ch == "$":
                out.append(self.dollar())
            else:
                out.append(ch)
        if stop:
            raise ExpansionError(f"missing '{stop}' in {self.text!r}")
        return "".join(out)

    def single_quoted(self) -> str:
        end = self.text.find("'", self.pos)
        if end < 0:
            raise ExpansionError(f"unexpected end of statement while looking for matching '"
                                 f" in {self.text!r}")
        value = self.text[self.pos : end]
        self.pos = end + 1
        return value

    def double_quoted(self) -> str:
        out: list[str] = []
        while True:
            ch = self.next()
            if not ch:
                raise ExpansionError(
                    f'unexpected end of statement while looking for matching " in {self.text!r}'
                )
            if ch == '"':
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
            elif ch == self.escape:
                following = self.peek()
                if following in ('"', "$", self.escape):
                    out.append(self.next())
                else:
                    out.append(ch)
            else:
                out.append(ch)

    def name(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and _is_name_char(self.text[self.pos]):
            self.pos += 1
        return self.text[start : self.pos]

    def dollar(self) -> str:
        ch = self.peek()
        if ch == "{":
            self.pos += 1
            return self.braced()
        if ch and (_is_name_char(ch)):
            if ch.isdigit():
                self.pos += 1
                return ""
            return self.env.get(self.name(), "")
        return "$"

    def braced(self) -> str:
        name = self.name()
        if not name:
            raise ExpansionError(f"bad substitution in {self.text!r}")
        ch = self.next()
        if ch == "}":
            return self.env.get(name, "")
        colon = ch == ":"
        if colon:
            ch = self.next()
        if ch not in ("-", "+", "?"):
            raise ExpansionError(f"unsupported modifier ({ch}) in substitution of {self.text!r}")
        word = self.word(stop="}")
        self.next()
        value = self.env.get(name)
        is_set = value is not None and (value != "" or not colon)
        if ch == "-":
            return value if is_set and value is not None else word
        if ch == "+":
            return word if is_set else ""
        if not is_set:
            raise ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
        return value or ""


def expand(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """One word with quotes removed and variables substituted from `env`."""
    return _Lexer(text, env, escape).word()


def split_words(text: str, escape: str = "\\") -> list[str]:
    """Blank-separated words; quotes and escapes are kept in the words (for `expand`)."""
    words: list[str] = []
    current: list[str] = []
    quote = ""
    in_word = False
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            current.append(ch)
            if ch == escape and quote == '"' and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch.isspace():
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
        else:
            in_word = True
            current.append(ch)
            if ch == escape and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
            elif ch in ("'", '"'):
                quote = ch
        i += 1
    if quote:
        raise ExpansionError(f"unmatched quote in {text!r}")
    if in_word:
        words.append("".join(current))
    return words


def name_values(
    text: str, keyword: str, escape: str = "\\", *, allow_bare: bool = False
) -> list[tuple[str, str | None]]:
    """`K=V K2="v 2"` (or the legacy `K value with spaces`) as raw (key, value) pairs.

    Values are still quoted (expand them); a key without `=` has value None when
    `allow_bare` (ARG), otherwise the legacy single-pair form applies.
    """
    words = split_words(text, escape)
    if not words:
        raise BuildError(f"{keyword} requires at least one argument")
    if "=" not in words[0] and not allow_bare:
        key, _, value = text.strip().partition(" ")
        key, _, tab_value = key.partition("\t")
        value = (tab_value + " " + value).strip() if tab_value else value.strip()
        if not value:
            raise BuildError(f"{keyword} names can not be blank" if not key
                             else f"{keyword} requires exactly one argument: {key}")
        return [(key, value)]
    pairs: list[tuple[str, str | None]] = []
    for word in words:
        key, sep, value = word.partition("=")
        if not key:
            raise BuildError(f"{keyword} names can not be blank")
        if not sep:
            if not allow_bare:
                raise BuildError(f"Syntax error - can't find = in {word!r}. Must be of the "
                                 "form: name=value")
            pairs.append((key, None))
            continue
        pairs.append((key, value))
    return pairs
