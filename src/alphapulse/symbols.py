"""Normalised <-> exchange symbols and per-instrument precision, as data.

One symbol form everywhere: ``BASE-QUOTE`` upper case (``BTC-USD``).  Each exchange writes it
its own way; the tables below say how, so no other module does string surgery on symbols.
"""
from __future__ import annotations

from dataclasses import dataclass

# Precision used when an exchange does not tell us one up front (Coinbase and Binance.US send
# decimal strings, which the book checks against it; 8 decimals covers every pair they list).
DEFAULT_PRICE_PRECISION = 8
DEFAULT_SIZE_PRECISION = 8


@dataclass(frozen=True, slots=True)
class Instrument:
    exchange: str
    symbol: str            # normalised: "BTC-USD"
    native: str            # on the wire: "BTC-USD", "BTC/USD", "XBT/USD", "BTCUSD"
    base: str
    quote: str
    price_precision: int = DEFAULT_PRICE_PRECISION
    size_precision: int = DEFAULT_SIZE_PRECISION


@dataclass(frozen=True, slots=True)
class _Convention:
    separator: str                       # "" means concatenated (Binance.US)
    aliases: dict[str, str]              # native asset code -> normalised asset code
    lower_stream: bool = False           # stream names use the lower-case native form


# Asset codes that differ from the normalised form.  Kraken v1 says XBT and XDG; v2 says BTC.
_CONVENTIONS: dict[str, _Convention] = {
    "coinbase": _Convention("-", {}),
    "kraken": _Convention("/", {"XBT": "BTC", "XDG": "DOGE"}),
    "binanceus": _Convention("", {}, lower_stream=True),
}

# Concatenated symbols cannot be split by text alone (USDTUSD is USDT-USD, not USD-TUSD): the
# exchange's listed pairs say it (Binance.US exchangeInfo: baseAsset/quoteAsset).  A native
# missing from the table falls back to the longest known quote suffix.
_PAIRS: dict[str, dict[str, tuple[str, str]]] = {"binanceus": {
    b + q: (b, q) for b, q in (p.split("/") for p in """
    BTC/USD ETH/USD BCH/USD LTC/USD XRP/USD ADA/USD BNB/USD DOGE/USD SOL/USD DOT/USD LINK/USD
    UNI/USD AVAX/USD MATIC/USD ATOM/USD XLM/USD ALGO/USD ETC/USD ZEC/USD DASH/USD ZRX/USD
    ZEN/USD OMG/USD COMP/USD CRV/USD MKR/USD AAVE/USD BAT/USD ENJ/USD MANA/USD SAND/USD
    GRT/USD FIL/USD XTZ/USD EOS/USD ONE/USD HBAR/USD VET/USD NEO/USD QTUM/USD ICX/USD
    ONT/USD ZIL/USD RVN/USD WAVES/USD KNC/USD STORJ/USD SUSHI/USD YFI/USD SHIB/USD EGLD/USD
    PAXG/USD IOTA/USD NANO/USD USDT/USD USDC/USD BUSD/USD DAI/USD TUSD/USD UST/USD
    BTC/USDT ETH/USDT BCH/USDT LTC/USDT ADA/USDT BNB/USDT DOGE/USDT SOL/USDT DOT/USDT
    LINK/USDT UNI/USDT AVAX/USDT MATIC/USDT ATOM/USDT XLM/USDT ALGO/USDT ETC/USDT ZRX/USDT
    COMP/USDT CRV/USDT MKR/USDT AAVE/USDT SHIB/USDT USDC/USDT BUSD/USDT
    BTC/USDC ETH/USDC SOL/USDC BTC/BUSD ETH/BUSD BNB/BUSD OMG/BUSD ADA/BUSD SOL/BUSD
    ETH/BTC BNB/BTC ADA/BTC LTC/BTC XRP/BTC SOL/BTC LINK/BTC BNB/ETH
    """.split())}}
_QUOTES = ("USDT", "USDC", "BUSD", "TUSD", "DAI", "USD", "EUR", "GBP", "BTC", "ETH", "BNB")

# Precisions we know without asking the exchange: (exchange, symbol) -> (price, size).
# Kraken's are those of its `instrument` channel / AssetPairs (pair_decimals, lot_decimals);
# the checksum depends on them.  v1 writes prices with its own width, hence separate rows.
_PRECISIONS: dict[tuple[str, str], tuple[int, int]] = {
    ("kraken", "BTC-USD"): (1, 8),
    ("kraken", "ETH-USD"): (2, 8),
    ("kraken-v1", "BTC-USD"): (5, 8),
    ("kraken-v1", "ETH-USD"): (5, 8),
    ("coinbase", "BTC-USD"): (2, 8),
    ("coinbase", "ETH-USD"): (2, 8),
    ("binanceus", "BTC-USD"): (8, 8),
    ("binanceus", "ETH-USD"): (8, 8),
}

EXCHANGES = tuple(_CONVENTIONS)


def _convention(exchange: str) -> _Convention:
    try:
        return _CONVENTIONS[exchange]
    except KeyError:
        raise ValueError(f"unknown exchange {exchange!r}; known: {', '.join(EXCHANGES)}") from None


def _split_symbol(symbol: str) -> tuple[str, str]:
    base, sep, quote = symbol.upper().partition("-")
    if not sep or not base or not quote or "-" in quote:
        raise ValueError(f"symbol {symbol!r} is not of the form BASE-QUOTE (e.g. BTC-USD)")
    return base, quote


def instrument(exchange: str, symbol: str, *, variant: str | None = None) -> Instrument:
    """The instrument for a normalised symbol on an exchange.

    ``variant`` selects a protocol's own conventions where they differ (``"v1"`` for Kraken v1).
    """
    conv = _convention(exchange)
    base, quote = _split_symbol(symbol)
    symbol = f"{base}-{quote}"
    native_assets = {v: k for k, v in conv.aliases.items()} if variant == "v1" else {}
    nbase, nquote = native_assets.get(base, base), native_assets.get(quote, quote)
    native = f"{nbase}{conv.separator}{nquote}"
    key = f"{exchange}-{variant}" if variant else exchange
    price, size = _PRECISIONS.get((key, symbol), (DEFAULT_PRICE_PRECISION, DEFAULT_SIZE_PRECISION))
    return Instrument(exchange, symbol, native, base, quote, price, size)


def from_native(exchange: str, native: str, *, variant: str | None = None) -> Instrument:
    """The instrument for an exchange's own symbol (``"XBT/USD"``, ``"btcusdt"``, ``"BTC-USD"``)."""
    conv = _convention(exchange)
    text = native.upper()
    if conv.separator:
        base, sep, quote = text.partition(conv.separator)
        if not sep or not base or not quote:
            raise ValueError(f"{exchange} symbol {native!r} has no {conv.separator!r} separator")
    elif text in _PAIRS.get(exchange, {}):
        base, quote = _PAIRS[exchange][text]
    else:
        quote = next((q for q in _QUOTES if text.endswith(q) and len(text) > len(q)), "")
        if not quote:
            raise ValueError(f"{exchange} symbol {native!r} ends in no known quote asset")
        base = text[: -len(quote)]
    base, quote = conv.aliases.get(base, base), conv.aliases.get(quote, quote)
    inst = instrument(exchange, f"{base}-{quote}", variant=variant)
    return Instrument(inst.exchange, inst.symbol, text, inst.base, inst.quote,
                      inst.price_precision, inst.size_precision)


def stream_name(inst: Instrument) -> str:
    """The form an exchange uses in stream names (Binance.US: lower case)."""
    return inst.native.lower() if _convention(inst.exchange).lower_stream else inst.native
