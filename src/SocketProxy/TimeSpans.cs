using IoMux.Interop;

namespace IoMux.SocketProxy;

/// <summary>systemd.time(7) spans exactly as systemd parses them (<c>parse_sec</c>, what systemd-socket-proxyd and
/// <c>systemd-analyze timespan</c> use): "30", "30s", "1min 30s", "1h30min", "500ms", "1.5s", ".5h", "2M",
/// "1month", "1y", "infinity"; a bare number means seconds.</summary>
/// <remarks>A port of <c>parse_time</c> and <c>extract_multiplier</c> in systemd's src/basic/time-util.c at
/// revision 003b845cb2322afe179f1886a98e622f075164de, rule for rule, so that every input is accepted or refused as
/// systemd does and lands on the same microsecond (tests/IoMux.SystemTests/Proxy/TimeSpanOracleTests.cs compares it
/// with <c>systemd-analyze timespan</c>). What it takes from C:
/// <list type="bullet">
/// <item>units are matched as prefixes in the table's order ("5ms" is milliseconds, "5m" minutes, "5M" months),
/// and what follows a unit starts the next component ("1h30min", "5s5" is 10 s);</item>
/// <item>numbers go through strtoll: C's six white-space characters and one sign before the digits, at most
/// <see cref="long.MaxValue"/>; a fraction is added digit by digit in integer microseconds, so digits below a
/// microsecond count for nothing;</item>
/// <item>the sum is an unsigned 64-bit count of microseconds; reaching <see cref="Infinity"/> is ERANGE.</item>
/// </list></remarks>
public static class TimeSpans
{
    /// <summary>systemd's USEC_INFINITY: what "infinity" parses to.</summary>
    public const ulong Infinity = ulong.MaxValue;

    private const ulong PerMillisecond = 1000, PerSecond = 1_000_000, PerMinute = 60 * PerSecond, PerHour = 60 * PerMinute;
    private const ulong PerDay = 24 * PerHour, PerWeek = 7 * PerDay;
    // systemd's month and year are 30.44 and 365.25 days (USEC_PER_MONTH, USEC_PER_YEAR in time-util.h).
    private const ulong PerMonth = 2_629_800 * PerSecond, PerYear = 31_557_600 * PerSecond;

    /// <summary>extract_multiplier's table, in its order: the first suffix that the text starts with wins.</summary>
    private static readonly (string Suffix, ulong Microseconds)[] Units =
    [
        ("seconds", PerSecond), ("second", PerSecond), ("sec", PerSecond), ("s", PerSecond),
        ("minutes", PerMinute), ("minute", PerMinute), ("min", PerMinute),
        ("months", PerMonth), ("month", PerMonth), ("M", PerMonth),
        ("msec", PerMillisecond), ("ms", PerMillisecond),
        ("m", PerMinute),
        ("hours", PerHour), ("hour", PerHour), ("hr", PerHour), ("h", PerHour),
        ("days", PerDay), ("day", PerDay), ("d", PerDay),
        ("weeks", PerWeek), ("week", PerWeek), ("w", PerWeek),
        ("years", PerYear), ("year", PerYear), ("y", PerYear),
        ("usec", 1), ("us", 1),
        ("\u03bcs", 1), // GREEK SMALL LETTER MU
        ("\u00b5s", 1), // MICRO SIGN
    ];

    /// <summary>systemd's WHITESPACE: what separates components and may surround the text.</summary>
    private const string Whitespace = " \t\n\r";

    /// <summary>Parses <paramref name="text"/> into microseconds (<see cref="Infinity"/> for "infinity").</summary>
    /// <returns>0, or the errno parse_time answers: <c>EINVAL</c> (not a time span) or
    /// <c>ERANGE</c> (negative, or too long for 64 bits of microseconds).</returns>
    public static int ParseMicroseconds(string text, out ulong microseconds)
    {
        microseconds = 0;
        int p = Skip(text, 0, Whitespace);
        if (text.AsSpan(p).StartsWith("infinity", StringComparison.Ordinal))
        {
            if (Skip(text, p + 8, Whitespace) != text.Length)
                return Errno.EINVAL;
            microseconds = Infinity;
            return 0;
        }

        ulong total = 0;
        for (bool something = false; ; something = true)
        {
            p = Skip(text, p, Whitespace);
            if (p == text.Length)
            {
                if (!something)
                    return Errno.EINVAL;
                break;
            }
            if (text[p] == '-') // no "-0" either
                return Errno.ERANGE;

            int error = StrToLL(text, p, out long whole, out int end);
            if (error != 0)
                return error;
            if (whole < 0)
                return Errno.ERANGE;

            bool fraction = end < text.Length && text[end] == '.';
            if (fraction)
                p = SkipDigits(text, end + 1);
            else if (end == p)
                return Errno.EINVAL;
            else
                p = end;

            int unitAt = Skip(text, p, Whitespace);
            int afterUnit = ExtractMultiplier(text, unitAt, out ulong multiplier);
            if (afterUnit == p && p < text.Length) // "12.34.56" is refused; "12.34 .56" and "12.34s.56" are not
                return Errno.EINVAL;
            p = afterUnit;

            if ((ulong)whole >= Infinity / multiplier)
                return Errno.ERANGE;
            ulong part = (ulong)whole * multiplier;
            if (part >= Infinity - total)
                return Errno.ERANGE;
            total += part;

            if (fraction)
            {
                ulong scale = multiplier / 10;
                int digit = end + 1;
                for (; digit < text.Length && char.IsAsciiDigit(text[digit]); digit++, scale /= 10)
                {
                    part = (ulong)(text[digit] - '0') * scale;
                    if (part >= Infinity - total)
                        return Errno.ERANGE;
                    total += part;
                }
                if (digit == end + 1) // "3.", "3.sec", "0.-0", "3. 1"
                    return Errno.EINVAL;
            }
        }
        microseconds = total;
        return 0;
    }

    /// <summary>Parses <paramref name="text"/>; null for "infinity". A span past <see cref="TimeSpan.MaxValue"/>
    /// (about 29,000 years; systemd takes up to 584,000) is <see cref="TimeSpan.MaxValue"/>: no timer reaches
    /// either.</summary>
    /// <exception cref="FormatException">Not a time span, or out of systemd's range; the message says which, with
    /// the errno name systemd answers.</exception>
    public static TimeSpan? Parse(string text)
    {
        int error = ParseMicroseconds(text, out ulong microseconds);
        if (error == Errno.ERANGE)
            throw new FormatException($"'{text}' is out of range (ERANGE): a time span is not negative and below 584,000 years");
        if (error != 0)
            throw new FormatException($"'{text}' is not a time span (EINVAL): e.g. 30s, 5min, 1h 30min, 1.5d, 2M, infinity");
        if (microseconds == Infinity)
            return null;
        return microseconds > (ulong)TimeSpan.MaxValue.Ticks / TimeSpan.TicksPerMicrosecond
            ? TimeSpan.MaxValue
            : TimeSpan.FromTicks((long)microseconds * TimeSpan.TicksPerMicrosecond);
    }

    /// <summary>The suffix at <paramref name="at"/> and its multiplier (seconds when none matches, as
    /// parse_sec's default unit); returns where the suffix ends, <paramref name="at"/> when none matched.</summary>
    private static int ExtractMultiplier(string text, int at, out ulong multiplier)
    {
        foreach (var (suffix, microseconds) in Units)
        {
            if (text.AsSpan(at).StartsWith(suffix, StringComparison.Ordinal))
            {
                multiplier = microseconds;
                return at + suffix.Length;
            }
        }
        multiplier = PerSecond;
        return at;
    }

    /// <summary>strtoll(text + start, &amp;end, 10): C white space, one sign, decimal digits; ERANGE past a long.
    /// Without digits nothing is converted and <paramref name="end"/> is <paramref name="start"/>.</summary>
    private static int StrToLL(string text, int start, out long value, out int end)
    {
        value = 0;
        end = start;
        int p = Skip(text, start, " \t\n\v\f\r");
        bool negative = false;
        if (p < text.Length && text[p] is '+' or '-')
        {
            negative = text[p] == '-';
            p++;
        }
        int digits = SkipDigits(text, p);
        if (digits == p)
            return 0;
        end = digits;
        // Accumulated negatively, as C libraries do, so that long.MinValue fits.
        long accumulated = 0;
        bool overflow = false;
        for (int i = p; i < digits; i++)
        {
            int digit = text[i] - '0';
            if (accumulated < (long.MinValue + digit) / 10)
                overflow = true;
            else
                accumulated = accumulated * 10 - digit;
        }
        if (overflow || (!negative && accumulated == long.MinValue))
            return Errno.ERANGE;
        value = negative ? accumulated : -accumulated;
        return 0;
    }

    private static int Skip(string text, int at, string characters)
    {
        while (at < text.Length && characters.Contains(text[at]))
            at++;
        return at;
    }

    private static int SkipDigits(string text, int at)
    {
        while (at < text.Length && char.IsAsciiDigit(text[at]))
            at++;
        return at;
    }
}
