using System.Text;

namespace IoMux.Web.Http;

/// <summary>What <see cref="HttpRequestParser.Parse"/> found.</summary>
internal enum ParseStatus
{
    /// <summary>The head is not complete yet: read more (unless the buffer is at the limit, which is an error).</summary>
    Incomplete,
    /// <summary>A complete, valid head.</summary>
    Complete,
    /// <summary>Invalid: answer with <see cref="HttpRequestHead.ErrorStatus"/> and close.</summary>
    Invalid,
}

/// <summary>An HTTP/1.x request-head parser for servers that take no request bodies: strict about syntax
/// (RFC 9112), bounded in size, allocation-free. It re-parses the buffered bytes from the start each time more
/// arrive, which is cheap at these sizes and keeps no state between reads.</summary>
internal static class HttpRequestParser
{
    /// <summary>Longest request line accepted, public as <see cref="HttpServerOptions.RequestLineSizeLimit"/> (nginx's large_client_header_buffers default is 8 KiB).</summary>
    internal const int MaxRequestLine = 8 * 1024;

    /// <summary>Longest head (request line and headers) accepted; public as <see cref="HttpServerOptions.RequestHeadSizeLimit"/>.</summary>
    internal const int MaxHead = 16 * 1024;

    /// <summary>Most header fields accepted; public as <see cref="HttpServerOptions.RequestHeaderCountLimit"/>.</summary>
    internal const int MaxHeaders = 100;

    /// <summary>Parses the head at the start of <paramref name="data"/> into <paramref name="head"/>.</summary>
    public static ParseStatus Parse(ReadOnlySpan<byte> data, HttpRequestHead head)
    {
        head.Reset();
        // RFC 9112 §2.2: a server SHOULD ignore at least one empty line (CRLF) received before the request-line. They
        // are skipped (and later consumed with the head) up to the request-line limit, so a flood of them is bounded
        // like an over-long request line: 400 past it, and the header timeout while it arrives.
        int start = SkipEmptyLines(data);
        if (start >= MaxRequestLine)
            return Fail(head, 400);
        int lineEnd = data[start..].IndexOf((byte)'\n');
        if (lineEnd < 0)
            return data.Length - start >= MaxRequestLine ? Fail(head, 414) : ParseStatus.Incomplete;
        if (lineEnd >= MaxRequestLine)
            return Fail(head, 414);
        lineEnd += start;
        var requestLine = TrimCr(data[start..lineEnd]);
        if (!ParseRequestLine(requestLine, head))
            return ParseStatus.Invalid;
        head.TargetStart += start;
        head.MethodStart = start;

        int position = lineEnd + 1;
        head.FieldsStart = position;
        int fields = 0;
        while (true)
        {
            int next = data[position..].IndexOf((byte)'\n');
            if (next < 0)
                return data.Length >= MaxHead ? Fail(head, 431) : ParseStatus.Incomplete;
            int end = position + next;
            if (end >= MaxHead)
                return Fail(head, 431);
            var line = TrimCr(data[position..end]);
            int lineStart = position;
            position = end + 1;
            if (line.IsEmpty)
                break;
            if (++fields > MaxHeaders)
                return Fail(head, 431);
            if (!ParseField(line, lineStart, head))
                return ParseStatus.Invalid;
        }
        head.HeadLength = position;
        if (head.Version == 11 && !head.HasHost)
            return Fail(head, 400);
        if (head.HasTransferEncoding || head.ContentLength > 0)
            return Fail(head, 413);
        return ParseStatus.Complete;
    }

    private static ParseStatus Fail(HttpRequestHead head, int status)
    {
        head.ErrorStatus = status;
        return ParseStatus.Invalid;
    }

    private static bool Reject(HttpRequestHead head, int status)
    {
        head.ErrorStatus = status;
        return false;
    }

    /// <summary>How many bytes of empty lines (CRLF or a bare LF) start <paramref name="data"/>.</summary>
    private static int SkipEmptyLines(ReadOnlySpan<byte> data)
    {
        int position = 0;
        while (position < data.Length) // bounded by the data
        {
            if (data[position] == '\n')
                position++;
            else if (data[position] == '\r' && position + 1 < data.Length && data[position + 1] == '\n')
                position += 2;
            else
                break;
        }
        return position;
    }

    private static ReadOnlySpan<byte> TrimCr(ReadOnlySpan<byte> line) =>
        !line.IsEmpty && line[^1] == '\r' ? line[..^1] : line;

    private static bool ParseRequestLine(ReadOnlySpan<byte> line, HttpRequestHead head)
    {
        int firstSpace = line.IndexOf((byte)' ');
        int lastSpace = line.LastIndexOf((byte)' ');
        if (firstSpace <= 0 || lastSpace == firstSpace)
            return Reject(head, 400);
        var method = line[..firstSpace];
        var target = line[(firstSpace + 1)..lastSpace];
        var version = line[(lastSpace + 1)..];
        foreach (byte b in method)
            if (!IsTokenChar(b))
                return Reject(head, 400);
        foreach (byte b in target)
            if (b <= ' ' || b >= 0x7f)
                return Reject(head, 400);
        int pathStart = 0, pathLength = target.Length;
        if (target.IsEmpty || target[0] != '/')
        {
            // RFC 9112 §3.2.2: a server MUST accept the absolute-form; its path is what is served (the authority
            // names this server, like Host). "*" and the authority-form (CONNECT) are not served: 400.
            if (!TryFindAbsoluteFormPath(target, out pathStart, out pathLength))
                return Reject(head, 400);
        }
        if (version.SequenceEqual("HTTP/1.1"u8))
            head.Version = 11;
        else if (version.SequenceEqual("HTTP/1.0"u8))
            head.Version = 10;
        else
            return Reject(head, version.StartsWith("HTTP/"u8) ? 505 : 400);
        head.Method = method.SequenceEqual("GET"u8) ? HttpMethodKind.Get
            : method.SequenceEqual("HEAD"u8) ? HttpMethodKind.Head
            : HttpMethodKind.Other;
        head.MethodLength = firstSpace;
        head.TargetStart = firstSpace + 1 + pathStart;
        head.TargetLength = pathLength;
        head.KeepAlive = head.Version == 11;
        return true;
    }

    /// <summary>Where the path (and query) of an "http" or "https" absolute-form target starts and how long it is.
    /// An empty path means "/" (RFC 9110 §4.2.3): the span is then the second slash of "://" and a query after the
    /// empty path is dropped, which keeps the target pointing into the parsed bytes. An empty host and userinfo are
    /// refused (RFC 9110 §4.2.1, §4.2.4).</summary>
    private static bool TryFindAbsoluteFormPath(ReadOnlySpan<byte> target, out int start, out int length)
    {
        start = length = 0;
        int schemeEnd = target.IndexOf("://"u8);
        if (schemeEnd < 0)
            return false;
        var scheme = target[..schemeEnd];
        if (!Ascii.EqualsIgnoreCase(scheme, "http"u8) && !Ascii.EqualsIgnoreCase(scheme, "https"u8))
            return false;
        int authorityStart = schemeEnd + 3;
        int authorityLength = target[authorityStart..].IndexOfAny((byte)'/', (byte)'?', (byte)'#');
        if (authorityLength < 0)
            authorityLength = target.Length - authorityStart;
        var authority = target.Slice(authorityStart, authorityLength);
        if (authority.IsEmpty || authority[0] == ':' || authority.Contains((byte)'@'))
            return false;
        int pathStart = authorityStart + authorityLength;
        if (pathStart < target.Length && target[pathStart] == '/')
            (start, length) = (pathStart, target.Length - pathStart);
        else
            (start, length) = (authorityStart - 1, 1);
        return true;
    }

    private static bool ParseField(ReadOnlySpan<byte> line, int lineStart, HttpRequestHead head)
    {
        int colon = line.IndexOf((byte)':');
        if (colon <= 0)
            return Reject(head, 400);
        var name = line[..colon];
        foreach (byte b in name)
            if (!IsTokenChar(b)) // also rejects whitespace before the colon (RFC 9112 §5.1) and obs-fold
                return Reject(head, 400);
        int valueStart = colon + 1;
        while (valueStart < line.Length && line[valueStart] is (byte)' ' or (byte)'\t')
            valueStart++;
        var value = line[valueStart..].TrimEnd(" \t"u8);
        foreach (byte b in value)
            if (b < ' ' && b != '\t' || b == 0x7f)
                return Reject(head, 400);
        if (name.Length == 4 && Ascii.EqualsIgnoreCase(name, "Host"u8))
        {
            if (head.HasHost)
                return Reject(head, 400);
            head.HasHost = true;
        }
        else if (Ascii.EqualsIgnoreCase(name, "Connection"u8))
        {
            ApplyConnection(value, head);
        }
        else if (Ascii.EqualsIgnoreCase(name, "Content-Length"u8))
        {
            if (!TryParseLength(value, out long length) || head.ContentLength >= 0 && head.ContentLength != length)
                return Reject(head, 400);
            head.ContentLength = length;
        }
        else if (Ascii.EqualsIgnoreCase(name, "Transfer-Encoding"u8))
        {
            head.HasTransferEncoding = true;
        }
        else
        {
            var place = new FieldValue(lineStart + valueStart, value.Length);
            if (Ascii.EqualsIgnoreCase(name, "Range"u8))
                head.Range = place;
            else if (Ascii.EqualsIgnoreCase(name, "If-Range"u8))
                head.IfRange = place;
            else if (Ascii.EqualsIgnoreCase(name, "If-None-Match"u8))
                head.IfNoneMatch = place;
            else if (Ascii.EqualsIgnoreCase(name, "If-Modified-Since"u8))
                head.IfModifiedSince = place;
            else if (Ascii.EqualsIgnoreCase(name, "Expect"u8))
                head.ExpectsContinue = Ascii.EqualsIgnoreCase(value, "100-continue"u8);
        }
        return true;
    }

    /// <summary>RFC 9112 §9.6: a "close" option closes the connection wherever it stands, so "keep-alive" (an
    /// HTTP/1.0 option) never overrides it, in this field or a later one (nginx gives "close" precedence too).</summary>
    private static void ApplyConnection(ReadOnlySpan<byte> value, HttpRequestHead head)
    {
        foreach (var range in value.Split((byte)','))
        {
            var option = value[range].Trim(" \t"u8);
            if (Ascii.EqualsIgnoreCase(option, "close"u8))
                head.ConnectionClose = true;
            else if (Ascii.EqualsIgnoreCase(option, "keep-alive"u8))
                head.KeepAlive = true;
        }
        if (head.ConnectionClose)
            head.KeepAlive = false;
    }

    private static bool TryParseLength(ReadOnlySpan<byte> value, out long length)
    {
        length = 0;
        if (value.IsEmpty || value.Length > 18)
            return false;
        foreach (byte b in value)
        {
            if (b < '0' || b > '9')
                return false;
            length = length * 10 + (b - '0');
        }
        return true;
    }

    // RFC 9110 tchar: "!#$%&'*+-.^_`|~", digits, letters.
    private static bool IsTokenChar(byte b) =>
        b is >= (byte)'a' and <= (byte)'z' or >= (byte)'A' and <= (byte)'Z' or >= (byte)'0' and <= (byte)'9'
        || "!#$%&'*+-.^_`|~"u8.Contains(b);
}
