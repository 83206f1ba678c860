/* Exact decimal text <-> scaled int64, with no floating point anywhere.
 *
 * A value v with precision p lives as the integer v * 10**p.  Parsing accepts what exchanges
 * send (and what JSON serialisers write): optional sign, digits, optional '.', optional
 * fraction, optional exponent ("1e-05" is how Python's json writes 0.00001).  Anything else is
 * rejected with a specific code so the caller can name the field and the reason.
 */
#ifndef ALPHAPULSE_DECIMAL_H
#define ALPHAPULSE_DECIMAL_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>

#define AP_DEC_OK 0
#define AP_DEC_SYNTAX 1      /* not a decimal number */
#define AP_DEC_NEGATIVE 2    /* a minus sign on a non-zero value */
#define AP_DEC_PRECISION 3   /* non-zero digits beyond the precision */
#define AP_DEC_RANGE 4       /* does not fit in int64 once scaled */
#define AP_DEC_NONFINITE 5   /* nan / inf / infinity */

#define AP_MAX_PRECISION 18
/* sign + 19 digits + '.' + padding zeros (precision <= 18) + NUL */
#define AP_DEC_BUFSIZE 48

static inline int ap_lower(char c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

static int ap_word_is(const char *s, size_t n, const char *word)
{
    size_t i = 0;
    for (; i < n; i++) {
        if (word[i] == '\0' || ap_lower(s[i]) != word[i]) return 0;
    }
    return word[i] == '\0';
}

static const int64_t ap_pow10[19] = {
    1LL, 10LL, 100LL, 1000LL, 10000LL, 100000LL, 1000000LL, 10000000LL, 100000000LL,
    1000000000LL, 10000000000LL, 100000000000LL, 1000000000000LL, 10000000000000LL,
    100000000000000LL, 1000000000000000LL, 10000000000000000LL, 100000000000000000LL,
    1000000000000000000LL};

/* INT64_MAX / 10**k: the largest value that can still be scaled by 10**k (no division on
 * the fast path). */
static const uint64_t ap_scale_limit[19] = {
    9223372036854775807ULL, 922337203685477580ULL, 92233720368547758ULL,
    9223372036854775ULL, 922337203685477ULL, 92233720368547ULL, 9223372036854ULL,
    922337203685ULL, 92233720368ULL, 9223372036ULL, 922337203ULL, 92233720ULL, 9223372ULL,
    922337ULL, 92233ULL, 9223ULL, 922ULL, 92ULL, 9ULL};

/* The general parser: signs, exponents, long digit strings, trailing zeros beyond the
 * precision, and every error.  ap_parse_decimal tries a one-pass fast path first. */
static int ap_parse_decimal_full(const char *s, size_t n, int precision, int64_t *out)
{
    size_t i = 0;
    int negative = 0;
    if (n == 0) return AP_DEC_SYNTAX;
    if (s[0] == '+' || s[0] == '-') {
        negative = s[0] == '-';
        i = 1;
    }
    if (i < n && (ap_lower(s[i]) == 'n' || ap_lower(s[i]) == 'i')) {
        if (ap_word_is(s + i, n - i, "nan") || ap_word_is(s + i, n - i, "inf")
                || ap_word_is(s + i, n - i, "infinity"))
            return AP_DEC_NONFINITE;
        return AP_DEC_SYNTAX;
    }
    /* Structure pass: [int digits] [. frac digits] [e [sign] exp digits] */
    size_t int_start = i;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    size_t int_end = i;
    size_t frac_start = i, frac_end = i;
    if (i < n && s[i] == '.') {
        i++;
        frac_start = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        frac_end = i;
    }
    if (int_end == int_start && frac_end == frac_start) return AP_DEC_SYNTAX;
    long exponent = 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        int exp_negative = 0;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) {
            exp_negative = s[i] == '-';
            i++;
        }
        if (i >= n || s[i] < '0' || s[i] > '9') return AP_DEC_SYNTAX;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            /* Clamp: anything beyond +-10000 is out of range or off precision anyway,
             * except for zero mantissas, which the digit loop below handles. */
            if (exponent < 100000) exponent = exponent * 10 + (s[i] - '0');
            i++;
        }
        if (exp_negative) exponent = -exponent;
    }
    if (i != n) return AP_DEC_SYNTAX;

    /* value = D * 10**shift, D = int digits followed by frac digits */
    size_t n_int = int_end - int_start, n_frac = frac_end - frac_start;
    long shift = (long)precision + exponent - (long)n_frac;
    size_t n_digits = n_int + n_frac;
    /* Digits at positions >= keep are dropped by a negative shift: they must be zero. */
    size_t keep = n_digits;
    if (shift < 0) keep = ((long)n_digits + shift > 0) ? (size_t)((long)n_digits + shift) : 0;
    uint64_t acc = 0;
    int nonzero = 0;
    for (size_t k = 0; k < n_digits; k++) {
        char c = k < n_int ? s[int_start + k] : s[frac_start + (k - n_int)];
        int d = c - '0';
        if (k >= keep) {
            if (d != 0) return AP_DEC_PRECISION;
            continue;
        }
        if (d) nonzero = 1;
        if (acc > (uint64_t)(INT64_MAX - d) / 10) return AP_DEC_RANGE;
        acc = acc * 10 + (uint64_t)d;
    }
    if (shift > 0 && acc != 0) {
        for (long k = 0; k < shift; k++) {
            if (acc > (uint64_t)INT64_MAX / 10) return AP_DEC_RANGE;
            acc *= 10;
        }
    }
    if (negative && (acc != 0 || nonzero)) return AP_DEC_NEGATIVE;
    *out = (int64_t)acc;
    return AP_DEC_OK;
}

/* Parse s[0:n] as a non-negative decimal scaled by 10**precision into *out.
 * Fast path for what exchanges send ("65061.91", "0.00100000"): plain digits with at most
 * one '.', at most 18 digits and no more decimals than the precision; one pass, no
 * structure scan.  Anything else goes to the full parser, which decides errors. */
static inline int ap_parse_decimal(const char *s, size_t n, int precision, int64_t *out)
{
    uint64_t acc = 0;
    int frac = -1, digits = 0;
    if (n == 0 || n > 19) return ap_parse_decimal_full(s, n, precision, out);
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - (unsigned)'0';
        if (d < 10) {
            acc = acc * 10 + d;
            digits++;
            frac += frac >= 0;
        } else if (s[i] == '.' && frac < 0) {
            frac = 0;
        } else {
            return ap_parse_decimal_full(s, n, precision, out);
        }
    }
    if (frac < 0) frac = 0;
    if (digits == 0 || frac > precision) return ap_parse_decimal_full(s, n, precision, out);
    if (acc > ap_scale_limit[precision - frac]) return AP_DEC_RANGE;
    *out = (int64_t)acc * ap_pow10[precision - frac];
    return AP_DEC_OK;
}

/* Write v / 10**precision with exactly `precision` decimals into buf (>= AP_DEC_BUFSIZE bytes).
 * Returns the length (no NUL is relied upon by callers, but one is written). */
static inline int ap_format_decimal(int64_t v, int precision, char *buf)
{
    char tmp[AP_DEC_BUFSIZE];
    int t = 0, len = 0;
    uint64_t u;
    if (v < 0) {
        buf[len++] = '-';
        u = (uint64_t)0 - (uint64_t)v;
    } else {
        u = (uint64_t)v;
    }
    do {
        tmp[t++] = (char)('0' + (u % 10));
        u /= 10;
    } while (u);
    while (t <= precision) tmp[t++] = '0';   /* at least one integer digit */
    while (t > precision) buf[len++] = tmp[--t];
    if (precision > 0) {
        buf[len++] = '.';
        while (t > 0) buf[len++] = tmp[--t];
    }
    buf[len] = '\0';
    return len;
}

static const char ap_digit_pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* The integer's plain digits (what Kraken's checksum wants: '.' removed, leading zeros
 * stripped, which for a scaled integer is exactly its decimal form).  Returns the length.
 * Two digits per division: the checksum formats 40 numbers per call. */
static inline int ap_format_digits(int64_t v, char *buf)
{
    char tmp[24];
    int t = 24, len;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    if (u == 0) return 0;   /* "0" with leading zeros stripped is empty */
    while (u >= 100) {
        unsigned r = (unsigned)(u % 100);
        u /= 100;
        tmp[--t] = ap_digit_pairs[2 * r + 1];
        tmp[--t] = ap_digit_pairs[2 * r];
    }
    if (u >= 10) {
        tmp[--t] = ap_digit_pairs[2 * u + 1];
        tmp[--t] = ap_digit_pairs[2 * u];
    } else {
        tmp[--t] = (char)('0' + u);
    }
    len = 24 - t;
    memcpy(buf, tmp + t, (size_t)len);
    return len;
}

#endif
