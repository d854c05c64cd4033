using System.Globalization;

namespace IoMux.SocketProxy;

/// <summary>systemd.time(7) spans as systemd-socket-proxyd takes them: "30", "30s", "1min 30s", "500ms", "2h", "1y",
/// "infinity"; a bare number means seconds.</summary>
public static class TimeSpans
{
    private static readonly (string Unit, double Seconds)[] Units =
    [
        ("usec", 1e-6), ("us", 1e-6), ("µs", 1e-6),
        ("msec", 1e-3), ("ms", 1e-3),
        ("seconds", 1), ("second", 1), ("sec", 1), ("s", 1),
        ("minutes", 60), ("minute", 60), ("min", 60), ("m", 60),
        ("hours", 3600), ("hour", 3600), ("hr", 3600), ("h", 3600),
        ("days", 86400), ("day", 86400), ("d", 86400),
        ("weeks", 604800), ("week", 604800), ("w", 604800),
        // systemd's month and year are 30.44 and 365.25 days (time-util.c USEC_PER_MONTH, USEC_PER_YEAR).
        ("months", 2629800), ("month", 2629800), ("M", 2629800),
        ("years", 31557600), ("year", 31557600), ("y", 31557600),
    ];

    /// <summary>Parses <paramref name="text"/>; null for "infinity".</summary>
    /// <exception cref="FormatException">Not a time span.</exception>
    public static TimeSpan? Parse(string text)
    {
        var rest = text.Trim();
        if (rest == "infinity")
            return null;
        if (rest.Length == 0)
            throw new FormatException("empty time span");
        double total = 0;
        while (rest.Length > 0)
        {
            int digits = 0;
            while (digits < rest.Length && (char.IsAsciiDigit(rest[digits]) || rest[digits] == '.'))
                digits++;
            if (digits == 0 || !double.TryParse(rest.AsSpan(0, digits), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double value))
                throw new FormatException($"'{text}' is not a time span (e.g. 30s, 5min, 1h 30min).");
            rest = rest[digits..].TrimStart();
            int letters = 0;
            while (letters < rest.Length && char.IsLetter(rest[letters]) || letters < rest.Length && rest[letters] == 'µ')
                letters++;
            string unit = rest[..letters];
            rest = rest[letters..].TrimStart();
            double scale = unit.Length == 0 ? 1 : Array.Find(Units, u => u.Unit == unit).Seconds;
            if (scale == 0)
                throw new FormatException($"'{text}': unknown unit '{unit}'.");
            total += value * scale;
        }
        // A span past TimeSpan's range (about 29,000 years) is an error, as systemd's parse_sec answers ERANGE;
        // TimeSpan.FromSeconds would throw OverflowException, which no caller expects (found by fuzzing).
        if (!(total < TimeSpan.MaxValue.TotalSeconds))
            throw new FormatException($"'{text}' is longer than {TimeSpan.MaxValue.TotalDays:F0} days.");
        return TimeSpan.FromSeconds(total);
    }
}
