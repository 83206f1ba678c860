"""The compiled ``exchanges._hotpath`` is required: without it the exchanges package refuses to
import (STYLE: no silent slow fallback).  The pure-Python equivalents exist only as oracles."""
from __future__ import annotations

import subprocess
import sys

from alphapulse.events import BookUpdate
from alphapulse.exchanges.parser import HOTPATH_MISSING, _book_update_maker, make_book_update


def test_missing_hotpath_is_a_loud_import_error() -> None:
    # sys.modules[name] = None makes `import name` raise ImportError, as an unbuilt tree would.
    code = ("import sys\n"
            "sys.modules['alphapulse.exchanges._hotpath'] = None\n"
            "try:\n"
            "    import alphapulse.exchanges.kraken\n"
            "except ImportError as exc:\n"
            "    print('IMPORTERROR', exc)\n"
            "else:\n"
            "    print('IMPORTED')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert f"IMPORTERROR {HOTPATH_MISSING}" in out, out


def test_python_oracle_builds_the_same_event_as_the_compiled_maker() -> None:
    args = ("kraken", "BTC-USD", "XBT/USD", None, 5, 7)
    compiled, oracle = make_book_update(*args), _book_update_maker(compiled=False)(*args)
    assert type(compiled) is type(oracle) is BookUpdate
    assert compiled == oracle == BookUpdate(*args)
