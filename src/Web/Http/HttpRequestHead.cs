namespace IoMux.Web.Http;

/// <summary>The request methods the servers here distinguish.</summary>
public enum HttpMethodKind
{
    /// <summary>GET.</summary>
    Get,
    /// <summary>HEAD: the headers of a GET without the body.</summary>
    Head,
    /// <summary>Any other syntactically valid method (answered 405).</summary>
    Other,
}

/// <summary>A parsed request line and the headers that matter to a static server. Reused from request to
/// request (parsing fills it in place; nothing is allocated for a valid request).</summary>
internal sealed class HttpRequestHead
{
    /// <summary>The method.</summary>
    public HttpMethodKind Method { get; internal set; }

    /// <summary>Where the request target starts in the parsed bytes.</summary>
    public int TargetStart { get; internal set; }

    /// <summary>The request target's length in bytes (path and query, as sent).</summary>
    public int TargetLength { get; internal set; }

    /// <summary>11 for HTTP/1.1, 10 for HTTP/1.0.</summary>
    public int Version { get; internal set; }

    /// <summary>Whether the connection stays open after the response (the version's default, changed by Connection).</summary>
    public bool KeepAlive { get; internal set; }

    /// <summary>The Content-Length header, or -1.</summary>
    public long ContentLength { get; internal set; }

    /// <summary>A Transfer-Encoding header was present (a body of unknown length follows).</summary>
    public bool HasTransferEncoding { get; internal set; }

    /// <summary>A Host header was present (HTTP/1.1 requires one).</summary>
    public bool HasHost { get; internal set; }

    /// <summary>Bytes of request line and headers, including the blank line: where the next request starts.</summary>
    public int HeadLength { get; internal set; }

    /// <summary>After an invalid head: the status to answer with: 400, 414 (request line too long), 431 (headers
    /// too large), 505 (HTTP version), 413 (a request body, which these servers do not take).</summary>
    public int ErrorStatus { get; internal set; }

    /// <summary>Where the method token starts and how long it is (the name of an <see cref="HttpMethodKind.Other"/>).</summary>
    internal int MethodStart, MethodLength;

    /// <summary>Where the header fields start (after the request line).</summary>
    internal int FieldsStart;

    // Where the values of the fields the static server acts on are (start, length; length -1 when absent),
    // recorded in the parser's single pass so that answering a conditional or range request scans nothing again.
    internal FieldValue Range, IfRange, IfNoneMatch, IfModifiedSince;

    /// <summary>"Expect: 100-continue" was sent: the client waits for an interim 100 before it sends the content.</summary>
    internal bool ExpectsContinue;

    /// <summary>A Connection field named "close" (it wins over "keep-alive", RFC 9112 §9.6).</summary>
    internal bool ConnectionClose;

    internal void Reset()
    {
        ErrorStatus = 0;
        Method = HttpMethodKind.Other;
        TargetStart = TargetLength = Version = HeadLength = MethodStart = MethodLength = FieldsStart = 0;
        KeepAlive = HasTransferEncoding = HasHost = ExpectsContinue = ConnectionClose = false;
        ContentLength = -1;
        Range = IfRange = IfNoneMatch = IfModifiedSince = FieldValue.Absent;
    }
}

/// <summary>A header value's place in the parsed bytes.</summary>
internal readonly record struct FieldValue(int Start, int Length)
{
    public static readonly FieldValue Absent = new(0, -1);

    public bool Present => Length >= 0;

    public ReadOnlySpan<byte> In(ReadOnlySpan<byte> data) => Present ? data.Slice(Start, Length) : default;
}
