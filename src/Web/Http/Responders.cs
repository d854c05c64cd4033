namespace IoMux.Web.Http;

/// <summary>"Hello, World!" to every GET (HEAD: the same head, no body); 405 to other methods.</summary>
internal sealed class HelloResponder : HttpResponder
{
    private static ReadOnlySpan<byte> Body => "Hello, World!"u8;

    public override bool Allows(HttpMethodKind method) => method != HttpMethodKind.Other;

    public override void Respond(HttpConnection connection, HttpRequestHead head, ReadOnlySpan<byte> target)
    {
        if (head.Method == HttpMethodKind.Other)
        {
            connection.WriteError(405, close: false);
            return;
        }
        var writer = connection.BeginResponse();
        writer.Head(200, Body.Length, head.KeepAlive, connection.Date);
        writer.Header("Content-Type"u8, "text/plain"u8);
        writer.End(head.Method == HttpMethodKind.Get ? Body : default);
        connection.Commit(writer);
    }
}

/// <summary>Files under a root: GET sends the file with sendfile, HEAD its head; 404 for what is missing or
/// outside the root, 400 for a malformed path, 405 for other methods, 301 for a directory named without its slash.
/// Every file answer carries ETag and Last-Modified (validators, RFC 9110 §8.8) and Accept-Ranges; a conditional
/// GET or HEAD that the file still matches is answered 304, and a single byte range 206 (RFC 9110 §14). Opening
/// and fstat happen on the loop thread (a cold disk can stall it; <see cref="FileReadPool"/> is the off-loop path
/// for reads).</summary>
internal sealed class StaticFileResponder(string root) : HttpResponder
{
    private readonly StaticRoot _root = new(root);

    // Scratch for the validators of the file being answered: one responder per loop thread, so never shared.
    private readonly byte[] _etag = new byte[40], _lastModified = new byte[29];

    public override bool Allows(HttpMethodKind method) => method != HttpMethodKind.Other;

    public override void Respond(HttpConnection connection, HttpRequestHead head, ReadOnlySpan<byte> target)
    {
        if (head.Method == HttpMethodKind.Other)
        {
            connection.WriteError(405, close: false);
            return;
        }
        int status = _root.Open(target, out int fd, out long length, out long modified, out byte[] contentType);
        if (status == 301)
        {
            Redirect(connection, head, target);
            return;
        }
        if (status != 0)
        {
            connection.WriteError(status, close: status == 400);
            return;
        }
        var input = connection.Input;
        var etag = _etag.AsSpan(0, Validators.FormatETag(modified, length, _etag));
        var lastModified = _lastModified.AsSpan();
        Validators.FormatHttpDate(modified, lastModified);

        if (Validators.NotModified(head.IfNoneMatch.In(input), head.IfModifiedSince.In(input), etag, modified))
        {
            // RFC 9110 §15.4.5: a 304 carries the validators a 200 would, and no content (nor its length, as nginx).
            Interop.LibC.CloseQuietly(fd);
            var notModified = connection.BeginResponse();
            notModified.StatusLine(304, connection.Date);
            notModified.Connection(head.KeepAlive);
            notModified.Header("ETag"u8, etag);
            notModified.Header("Last-Modified"u8, lastModified);
            notModified.End(default);
            connection.Commit(notModified);
            return;
        }

        var range = ByteRange.Whole;
        // RFC 9110 §14.2: only GET has range semantics; If-Range (§13.1.5) keeps the range only while the file is
        // the one the client has part of.
        if (head.Method == HttpMethodKind.Get && head.Range.Present
            && (!head.IfRange.Present || Validators.IfRangeHolds(head.IfRange.In(input), etag, modified)))
            range = ByteRange.Parse(head.Range.In(input), length);
        if (range.Unsatisfiable)
        {
            Interop.LibC.CloseQuietly(fd);
            var refused = connection.BeginResponse();
            var text = HttpResponseWriter.Reason(416);
            refused.Head(416, text.Length, head.KeepAlive, connection.Date);
            refused.Append("Content-Range: bytes */"u8); // RFC 9110 §14.4: the current length, for the next try
            refused.Number(length);
            refused.Append("\r\n"u8);
            refused.Header("Content-Type"u8, "text/plain"u8);
            refused.End(text);
            connection.Commit(refused);
            return;
        }
        bool partial = !range.IsWhole;
        long first = partial ? range.First : 0, count = partial ? range.Last - range.First + 1 : length;
        var writer = connection.BeginResponse();
        writer.Head(partial ? 206 : 200, count, head.KeepAlive, connection.Date);
        writer.Header("Content-Type"u8, contentType);
        writer.Header("ETag"u8, etag);
        writer.Header("Last-Modified"u8, lastModified);
        writer.Header("Accept-Ranges"u8, "bytes"u8);
        if (partial)
        {
            writer.Append("Content-Range: bytes "u8);
            writer.Number(range.First);
            writer.Append("-"u8);
            writer.Number(range.Last);
            writer.Append("/"u8);
            writer.Number(length);
            writer.Append("\r\n"u8);
        }
        writer.End(default);
        connection.Commit(writer);
        if (head.Method == HttpMethodKind.Get && count > 0)
            connection.AttachFile(fd, first, count);
        else
            Interop.LibC.CloseQuietly(fd);
    }

    /// <summary>Longest Location this server writes (the head must fit its 4 KiB buffer).</summary>
    private const int MaxLocation = 2048;

    /// <summary>301 to the directory's path with a slash after it (the query kept), relative to this server
    /// (RFC 9110 §10.2.2 allows a relative Location). The path is the normalised one, percent-encoded again, never
    /// the raw target: echoing "//evil.example/..%2fsub" (or "/\evil.example/...") would send a browser to another
    /// host, since both read as a network-path reference (RFC 3986 §4.2; browsers treat "\" as "/"). nginx builds
    /// Location from its normalised URI too.</summary>
    private static void Redirect(HttpConnection connection, HttpRequestHead head, ReadOnlySpan<byte> target)
    {
        int query = target.IndexOfAny((byte)'?', (byte)'#');
        var rest = query < 0 || target[query] == '#' ? default : target[query..];
        Span<byte> path = stackalloc byte[target.Length + 1];
        Span<byte> location = stackalloc byte[MaxLocation];
        int length = 0;
        if (StaticRoot.Normalize(target, path, out int pathLength) != 0
            || !TryAppendEncodedPath(path[..pathLength], location, ref length)
            || length + rest.Length > location.Length)
        {
            connection.WriteError(414, close: false); // a directory whose name does not fit a Location we can write
            return;
        }
        rest.CopyTo(location[length..]);
        length += rest.Length;
        var text = HttpResponseWriter.Reason(301);
        var writer = connection.BeginResponse();
        writer.Head(301, text.Length, head.KeepAlive, connection.Date);
        writer.Append("Location: "u8);
        writer.Append(location[..length]);
        writer.Append("\r\n"u8);
        writer.Header("Content-Type"u8, "text/plain"u8);
        writer.End(head.Method == HttpMethodKind.Get ? text : default);
        connection.Commit(writer);
    }

    /// <summary>"/" + <paramref name="path"/> + "/", each byte outside RFC 3986's pchar (and "/") percent-encoded,
    /// so the result is always an absolute path on this server: it starts with one "/" followed by a segment that
    /// is not empty (Normalize drops empty segments), and no "\\", "?", "#" or control byte survives unencoded.</summary>
    internal static bool TryAppendEncodedPath(ReadOnlySpan<byte> path, Span<byte> into, ref int length)
    {
        if (length + 2 + 3 * path.Length > into.Length)
            return false;
        into[length++] = (byte)'/';
        foreach (byte b in path)
        {
            if (b == '/' || IsPathCharacter(b))
            {
                into[length++] = b;
                continue;
            }
            into[length++] = (byte)'%';
            into[length++] = (byte)"0123456789ABCDEF"[b >> 4];
            into[length++] = (byte)"0123456789ABCDEF"[b & 15];
        }
        if (path.Length > 0)
            into[length++] = (byte)'/';
        return true;
    }

    // RFC 3986 §3.3: pchar = unreserved / pct-encoded / sub-delims / ":" / "@" ("%" itself is encoded here).
    private static bool IsPathCharacter(byte b) =>
        b is >= (byte)'a' and <= (byte)'z' or >= (byte)'A' and <= (byte)'Z' or >= (byte)'0' and <= (byte)'9'
            or (byte)'-' or (byte)'.' or (byte)'_' or (byte)'~' or (byte)'!' or (byte)'$' or (byte)'&' or (byte)'\''
            or (byte)'(' or (byte)')' or (byte)'*' or (byte)'+' or (byte)',' or (byte)';' or (byte)'=' or (byte)':' or (byte)'@';

    public override void Dispose() => _root.Dispose();
}
