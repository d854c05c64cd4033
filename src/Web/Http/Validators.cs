using System.Buffers.Text;
using System.Text;

namespace IoMux.Web.Http;

/// <summary>A file's validators (RFC 9110 §8.8) and the conditional requests that use them (§13).</summary>
internal static class Validators
{
    /// <summary>The entity tag of a file as nginx makes it: <c>"mtime-size"</c> in lowercase hex, strong (the
    /// same bytes for the same modification second and size), so the two servers agree on a file's tag.</summary>
    public static int FormatETag(long modified, long size, Span<byte> output)
    {
        output[0] = (byte)'"';
        int at = 1;
        Utf8Formatter.TryFormat(modified, output[at..], out int written, new System.Buffers.StandardFormat('x'));
        at += written;
        output[at++] = (byte)'-';
        Utf8Formatter.TryFormat(size, output[at..], out written, new System.Buffers.StandardFormat('x'));
        at += written;
        output[at++] = (byte)'"';
        return at;
    }

    /// <summary>IMF-fixdate (RFC 9110 §5.6.7) of <paramref name="seconds"/> since the epoch: 29 bytes.</summary>
    public static void FormatHttpDate(long seconds, Span<byte> output) =>
        DateTime.UnixEpoch.AddSeconds(seconds).TryFormat(output, out _, "r", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>An HTTP-date in the IMF-fixdate form, as seconds since the epoch; false for anything else (the
    /// obsolete forms included: RFC 9110 §13.1.3 says an invalid date makes the field ignored).</summary>
    public static bool TryParseHttpDate(ReadOnlySpan<byte> value, out long seconds)
    {
        seconds = 0;
        if (!Utf8Parser.TryParse(value, out DateTime date, out int consumed, 'R') || consumed != value.Length)
            return false;
        seconds = (long)(date - DateTime.UnixEpoch).TotalSeconds;
        return true;
    }

    /// <summary>RFC 9110 §13.2.2 steps 3 and 4 for GET and HEAD: If-None-Match when present (weak comparison,
    /// §13.1.2), and only then, If-Modified-Since.</summary>
    public static bool NotModified(ReadOnlySpan<byte> ifNoneMatch, ReadOnlySpan<byte> ifModifiedSince, ReadOnlySpan<byte> etag, long modified)
    {
        if (!ifNoneMatch.IsEmpty)
            return MatchesAny(ifNoneMatch, etag, weak: true);
        return !ifModifiedSince.IsEmpty && TryParseHttpDate(ifModifiedSince, out long since) && modified <= since;
    }

    /// <summary>RFC 9110 §13.1.5: the range applies when If-Range names the current representation: an entity tag
    /// by strong comparison, or a date equal to Last-Modified.</summary>
    public static bool IfRangeHolds(ReadOnlySpan<byte> ifRange, ReadOnlySpan<byte> etag, long modified)
    {
        if (ifRange.StartsWith("\""u8) || ifRange.StartsWith("W/"u8))
            return ifRange.SequenceEqual(etag); // a weak tag never matches strongly
        return TryParseHttpDate(ifRange, out long date) && date == modified;
    }

    /// <summary>Whether the list of entity tags (or "*") in a field names <paramref name="etag"/>.</summary>
    private static bool MatchesAny(ReadOnlySpan<byte> list, ReadOnlySpan<byte> etag, bool weak)
    {
        if (list.Trim(" \t"u8).SequenceEqual("*"u8))
            return true;
        foreach (var range in list.Split((byte)','))
        {
            var candidate = list[range].Trim(" \t"u8);
            if (weak && candidate.StartsWith("W/"u8))
                candidate = candidate[2..];
            if (candidate.SequenceEqual(etag))
                return true;
        }
        return false;
    }
}

/// <summary>The one byte range a static answer sends (RFC 9110 §14.1.2), resolved against the file's length.</summary>
internal readonly record struct ByteRange(long First, long Last, bool IsWhole, bool Unsatisfiable)
{
    public static readonly ByteRange Whole = new(0, -1, true, false);

    private static readonly ByteRange NotSatisfiable = new(0, -1, false, true);

    /// <summary>A Range field: one satisfiable range, or <see cref="Unsatisfiable"/> (416) when its one range starts
    /// past the end (or is a suffix of zero bytes). Anything else is the whole file: a syntax IoMux does not read,
    /// another unit, or several ranges (RFC 9110 §14.2: a server MAY ignore Range; one 200 instead of a multipart
    /// answer, as the brief asks).</summary>
    public static ByteRange Parse(ReadOnlySpan<byte> field, long length)
    {
        int equals = field.IndexOf((byte)'=');
        if (equals < 0 || !Ascii.EqualsIgnoreCase(field[..equals].Trim(" \t"u8), "bytes"u8))
            return Whole;
        var spec = field[(equals + 1)..].Trim(" \t"u8);
        if (spec.Contains((byte)','))
            return Whole;
        int dash = spec.IndexOf((byte)'-');
        if (dash < 0)
            return Whole;
        var firstText = spec[..dash];
        var lastText = spec[(dash + 1)..];
        if (firstText.IsEmpty)
        {
            // suffix-range: the last N bytes (§14.1.2); "-0" selects nothing, so it cannot be satisfied.
            if (!TryParseNumber(lastText, out long suffix))
                return Whole;
            if (suffix == 0 || length == 0)
                return NotSatisfiable;
            return new ByteRange(Math.Max(0, length - suffix), length - 1, false, false);
        }
        if (!TryParseNumber(firstText, out long first))
            return Whole;
        long last = length - 1;
        if (!lastText.IsEmpty)
        {
            if (!TryParseNumber(lastText, out last) || last < first)
                return Whole; // §14.1.1: invalid, so ignored
            last = Math.Min(last, length - 1);
        }
        if (first >= length)
            return NotSatisfiable; // §14.1.1: satisfiable only when first-pos is less than the length
        return new ByteRange(first, last, false, false);
    }

    private static bool TryParseNumber(ReadOnlySpan<byte> text, out long value)
    {
        value = 0;
        if (text.IsEmpty || text.Length > 18)
            return false;
        foreach (byte b in text)
        {
            if (b is < (byte)'0' or > (byte)'9')
                return false;
            value = value * 10 + (b - '0');
        }
        return true;
    }
}
