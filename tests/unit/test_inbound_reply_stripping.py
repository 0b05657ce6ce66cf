"""StrippedTextReply's search (domain/inbound.py): the patterns skipped for a text can never match it."""

from __future__ import annotations

import itertools

from posthouse.server.domain.inbound import (
    _ATTRIBUTION,
    _HEADER_BLOCK,
    _SEPARATOR,
    _quote_patterns,
    strip_reply,
)

_TOPS = ["Thanks, that works.\n", "Sounds good\n\n", "", "Ok: done\n", "Mit freundlichen Grüßen\n",
         "La de da de da 1.\nLa de da de da 2.\n"]
_QUOTES = [
    "On Mon, 2 Jun 2025 at 10:00, Ann <ann@example.com> wrote:\n> hello\n",
    "On Mon, Ann wrote :  \n> hello\n",
    "Le lun. 2 juin 2025, Ann a écrit :\n> bonjour\n",
    "Am Montag schrieb Ann:\n> hallo\n",
    "El lunes, Ann escribió:\n> hola\n",
    "W dniu 2 czerwca Ann napisał:\n> cześć\n",
    "ON MONDAY ANN WROTE:\n> HI\n",
    "-----Original Message-----\nFrom: Ann\nSent: Monday\n",
    "----- Ursprüngliche Nachricht -----\nVon: Ann\n",
    "________________________________\nFrom: Ann <ann@example.com>\nSent: Monday, June 2, 2025\nTo: Bob\n",
    "*From:* Ann\n*Date:* Monday\n",
    "FROM: Ann\nDATE: Monday\n",
    "> just a quote\n> to the end\n",
    "> a quote\nthen more text\n",
    "no quote here: at all\n",
    "dashes -- but no separator\n",
    "From the desk of Ann\n",
]


def test_the_patterns_a_text_skips_never_match_it() -> None:
    for top, quote in itertools.product(_TOPS, _QUOTES):
        text = top + quote
        kept = _quote_patterns(text)
        for pattern in (_ATTRIBUTION, _SEPARATOR, _HEADER_BLOCK):
            if pattern.search(text) is not None:
                assert pattern in kept, (pattern.pattern[:40], text)


def test_replies_are_stripped_above_their_quote() -> None:
    assert strip_reply("Thanks, that works.\n\nOn Mon, Ann <ann@example.com> wrote:\n> hello\n") == \
        "Thanks, that works."
    assert strip_reply("Sounds good\n-----Original Message-----\nFrom: Ann\n") == "Sounds good"
    assert strip_reply("Sure\n\nFROM: Ann\nDATE: Monday\n") == "Sure"
    assert strip_reply("Yes\n> a quote\n> to the end\n") == "Yes"
    assert strip_reply("> a quote\nthen more text\n") == ""
    assert strip_reply("La de da de da 1.\nLa de da de da 2.\n") == ""
