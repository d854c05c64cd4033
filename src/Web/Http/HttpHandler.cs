using System.Text;
using Microsoft.Win32.SafeHandles;

namespace IoMux.Web.Http;

/// <summary>Answers one request of an <see cref="HttpServer"/> made with
/// <see cref="HttpServer.Create(System.Net.IPEndPoint, HttpHandler, HttpServerOptions?, string?)"/>. It runs on the
/// connection's loop thread, so it must not block: it reads <paramref name="request"/> and fills
/// <paramref name="response"/> before it returns (a long body is produced later, piece by piece, by a
/// <see cref="HttpBodySource"/>). A handler that sends nothing answers its <see cref="ResponseBuilder.Status"/> with an
/// empty body; one that throws before sending answers 500 and the connection closes.</summary>
/// <param name="request">The request; its spans are valid only until the handler returns.</param>
/// <param name="response">Where the answer goes.</param>
public delegate void HttpHandler(RequestView request, ResponseBuilder response);

/// <summary>Produces the next piece of a response body into <paramref name="buffer"/>, called only when the
/// previous piece is in the socket (back-pressure: a slow client slows the source, nothing piles up).</summary>
/// <param name="buffer">Where to write (up to 4 KiB, fewer when less of the announced length is left).</param>
/// <returns>The bytes written; 0 when the body is complete.</returns>
public delegate int HttpBodySource(Span<byte> buffer);

/// <summary>A request as a handler sees it: the parsed head and, when the server takes request content
/// (<see cref="HttpServerOptions.MaxRequestBodySize"/>), the whole body. One instance per connection, reused; every
/// span points into the connection's input buffer and is valid only while the handler runs.</summary>
public sealed class RequestView
{
    private readonly HttpConnection _connection;
    private bool _active;

    internal RequestView(HttpConnection connection) => _connection = connection;

    internal void Begin() => _active = true;

    internal void End() => _active = false;

    private ReadOnlySpan<byte> Input => _active ? _connection.Input
        : throw new InvalidOperationException("A RequestView is valid only while its handler runs.");

    private HttpRequestHead Head => _connection.Head;

    /// <summary>GET, HEAD, or <see cref="HttpMethodKind.Other"/> (then <see cref="Method"/> names it).</summary>
    public HttpMethodKind MethodKind => Head.Method;

    /// <summary>The method token as sent (case-sensitive, RFC 9110 §9.1): "GET", "POST", ...</summary>
    public ReadOnlySpan<byte> Method => Input.Slice(Head.MethodStart, Head.MethodLength);

    /// <summary>The request target's path and query as sent, still percent-encoded (the path of an absolute-form
    /// target, RFC 9112 §3.2.2).</summary>
    public ReadOnlySpan<byte> Target => Input.Slice(Head.TargetStart, Head.TargetLength);

    /// <summary>The path: <see cref="Target"/> up to "?" (percent-encoded, as sent).</summary>
    public ReadOnlySpan<byte> Path
    {
        get
        {
            var target = Target;
            int query = target.IndexOf((byte)'?');
            return query < 0 ? target : target[..query];
        }
    }

    /// <summary>The query: what follows "?" in <see cref="Target"/> (empty when there is none).</summary>
    public ReadOnlySpan<byte> Query
    {
        get
        {
            var target = Target;
            int query = target.IndexOf((byte)'?');
            return query < 0 ? default : target[(query + 1)..];
        }
    }

    /// <summary>11 for HTTP/1.1, 10 for HTTP/1.0.</summary>
    public int Version => Head.Version;

    /// <summary>Whether the connection stays open after this response.</summary>
    public bool KeepAlive => Head.KeepAlive;

    /// <summary>The Content-Length sent, or -1.</summary>
    public long ContentLength => Head.ContentLength;

    /// <summary>The request content (empty when none was sent).</summary>
    public ReadOnlySpan<byte> Body => Input.Slice(Head.HeadLength, _connection.BodyLength);

    /// <summary>The first field named <paramref name="name"/> (ASCII case-insensitive, RFC 9110 §5.1), its value
    /// without surrounding whitespace. Scans the head; allocates nothing.</summary>
    public bool TryGetHeader(ReadOnlySpan<byte> name, out ReadOnlySpan<byte> value)
    {
        var fields = Input[Head.FieldsStart..Head.HeadLength];
        while (!fields.IsEmpty) // bounded: each pass consumes a line
        {
            int end = fields.IndexOf((byte)'\n');
            var line = end < 0 ? fields : fields[..end];
            fields = end < 0 ? default : fields[(end + 1)..];
            int colon = line.IndexOf((byte)':');
            if (colon > 0 && Ascii.EqualsIgnoreCase(line[..colon], name))
            {
                value = line[(colon + 1)..].Trim(" \t\r"u8);
                return true;
            }
        }
        value = default;
        return false;
    }

    /// <summary>The first field named <paramref name="name"/> as a string (Latin-1), or null; allocates.</summary>
    public string? GetHeader(string name)
    {
        Span<byte> ascii = stackalloc byte[Math.Min(name.Length, 256)];
        if (name.Length > ascii.Length || Encoding.ASCII.GetBytes(name, ascii) != name.Length)
            return null;
        return TryGetHeader(ascii, out var value) ? Encoding.Latin1.GetString(value) : null;
    }

    /// <summary>The path, percent-decoded as UTF-8 (allocates; <see cref="Path"/> does not).</summary>
    public string DecodedPath() => Uri.UnescapeDataString(Encoding.UTF8.GetString(Path));
}

/// <summary>A response as a handler writes it: a status, header fields, then exactly one of <see cref="Send(ReadOnlySpan{byte})"/>,
/// <see cref="Send(string)"/>, <see cref="SendFile"/> or <see cref="SendBody"/>. The server adds Server, Date, the
/// framing (Content-Length, or chunked transfer coding for a body of unknown length, RFC 9112 §7.1) and Connection,
/// and leaves the body out for HEAD (RFC 9110 §9.3.2). One instance per connection, reused.</summary>
public sealed class ResponseBuilder
{
    /// <summary>Most bytes of header fields a handler may add; public as <see cref="HttpServerOptions.ResponseHeaderSizeLimit"/>.</summary>
    internal const int MaxHeaderBytes = 2048;

    private readonly HttpConnection _connection;
    private readonly byte[] _headers = new byte[MaxHeaderBytes];
    private int _headersLength;
    private bool _hasContentType;

    internal ResponseBuilder(HttpConnection connection) => _connection = connection;

    internal void Begin()
    {
        Status = 200;
        _headersLength = 0;
        _hasContentType = false;
        HasStarted = false;
    }

    /// <summary>The status code (default 200).</summary>
    public int Status { get; set; }

    /// <summary>The head has been written: headers and status can no longer change.</summary>
    public bool HasStarted { get; private set; }

    /// <summary>Adds a header field. Framing fields (Content-Length, Transfer-Encoding, Connection) are the
    /// server's; a name that is not a token or a value with CR, LF or NUL (response splitting) is refused.</summary>
    /// <exception cref="ArgumentException">An invalid or reserved field.</exception>
    /// <exception cref="InvalidOperationException">The head was sent, or the fields exceed <see cref="HttpServerOptions.ResponseHeaderSizeLimit"/>.</exception>
    public void AddHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        if (HasStarted)
            throw new InvalidOperationException("The response head was already sent.");
        if (name.IsEmpty || !Ascii.IsValid(name) || name.IndexOfAny(" \t:\r\n\0()<>@,;\\\"/[]?={}"u8) >= 0)
            throw new ArgumentException($"'{Encoding.Latin1.GetString(name)}' is not a field name (RFC 9110 §5.1).", nameof(name));
        if (value.IndexOfAny("\r\n\0"u8) >= 0)
            throw new ArgumentException("A field value may not contain CR, LF or NUL (RFC 9110 §5.5).", nameof(value));
        if (Ascii.EqualsIgnoreCase(name, "Content-Length"u8) || Ascii.EqualsIgnoreCase(name, "Transfer-Encoding"u8)
            || Ascii.EqualsIgnoreCase(name, "Connection"u8))
            throw new ArgumentException($"{Encoding.ASCII.GetString(name)} is set by the server.", nameof(name));
        int needed = name.Length + value.Length + 4;
        if (_headersLength + needed > _headers.Length)
            throw new InvalidOperationException($"The header fields exceed {MaxHeaderBytes} bytes.");
        var into = _headers.AsSpan(_headersLength);
        name.CopyTo(into);
        ": "u8.CopyTo(into[name.Length..]);
        value.CopyTo(into[(name.Length + 2)..]);
        "\r\n"u8.CopyTo(into[(name.Length + 2 + value.Length)..]);
        _headersLength += needed;
        _hasContentType |= Ascii.EqualsIgnoreCase(name, "Content-Type"u8);
    }

    /// <summary>Adds a header field given as strings (ASCII name, Latin-1 value).</summary>
    public void AddHeader(string name, string value)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(value);
        if (name.Length + value.Length > MaxHeaderBytes)
            throw new InvalidOperationException($"The header fields exceed {MaxHeaderBytes} bytes.");
        Span<byte> bytes = stackalloc byte[name.Length + value.Length];
        if (!Ascii.IsValid(name) || value.AsSpan().ContainsAnyExceptInRange((char)0, (char)0xff))
            throw new ArgumentException("A field must be ASCII (its value Latin-1).");
        Encoding.Latin1.GetBytes(name, bytes);
        Encoding.Latin1.GetBytes(value, bytes[name.Length..]);
        AddHeader(bytes[..name.Length], bytes[name.Length..]);
    }

    /// <summary>Sends <paramref name="body"/> (copied: the caller may reuse its buffer at once).</summary>
    public void Send(ReadOnlySpan<byte> body)
    {
        var writer = WriteHead(body.Length);
        if (!SendsBody)
        {
            Commit(writer);
            return;
        }
        if (body.Length <= writer.Free)
        {
            writer.Append(body);
            Commit(writer);
            return;
        }
        Commit(writer);
        _connection.AttachBody(body);
    }

    /// <summary>Sends <paramref name="text"/> as UTF-8, with "Content-Type: text/plain; charset=utf-8" unless a
    /// Content-Type was added.</summary>
    public void Send(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (!_hasContentType)
            AddHeader("Content-Type"u8, "text/plain; charset=utf-8"u8);
        Send(Encoding.UTF8.GetBytes(text));
    }

    /// <summary>Sends <paramref name="count"/> bytes of <paramref name="file"/> from <paramref name="offset"/> with
    /// sendfile where the OS has it (<see cref="FileSender"/>), as the socket takes them.</summary>
    /// <param name="file">An open file; disposed once sent unless <paramref name="leaveOpen"/>.</param>
    /// <param name="offset">The first byte.</param>
    /// <param name="count">How many bytes (the file must have them: a file that shrinks closes the connection).</param>
    /// <param name="leaveOpen">Keep <paramref name="file"/> open after the response.</param>
    public void SendFile(SafeFileHandle file, long offset, long count, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        Commit(WriteHead(count));
        if (SendsBody && count > 0)
            _connection.AttachFile(file, offset, count, leaveOpen);
        else if (!leaveOpen)
            file.Dispose();
    }

    /// <summary>Sends what <paramref name="source"/> produces, piece by piece as the socket drains. With a
    /// <paramref name="length"/> the source must produce exactly that many bytes; without (-1) the body goes
    /// chunked to an HTTP/1.1 client and delimited by the close to an HTTP/1.0 one.</summary>
    /// <param name="source">Called on the loop thread each time the previous piece is out.</param>
    /// <param name="length">The body's length, or -1 when unknown.</param>
    /// <param name="owner">Disposed when the body is complete or the connection closes (a stream, a file).</param>
    public void SendBody(HttpBodySource source, long length = -1, IDisposable? owner = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentOutOfRangeException.ThrowIfLessThan(length, -1);
        bool chunked = length < 0 && _connection.Head.Version == 11;
        Commit(WriteHead(length, chunked));
        if (SendsBody && length != 0)
            _connection.AttachSource(source, owner, length, chunked);
        else
            owner?.Dispose();
    }

    /// <summary>Sends what <paramref name="stream"/> reads (on the loop thread: a memory stream or a file, not a
    /// network stream), as <see cref="SendBody"/> does.</summary>
    public void SendStream(Stream stream, long length = -1, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        SendBody(stream.Read, length, leaveOpen ? null : stream);
    }

    private bool SendsBody => _connection.Head.Method != HttpMethodKind.Head && !IsBodiless(Status);

    // RFC 9110 §6.4.1: 1xx, 204 and 304 responses have no content; §8.6: no Content-Length in 1xx and 204.
    private static bool IsBodiless(int status) => status is < 200 or 204 or 304;

    private HttpResponseWriter WriteHead(long length, bool chunked = false)
    {
        if (HasStarted)
            throw new InvalidOperationException("The response was already sent.");
        if (Status is < 100 or > 999)
            throw new InvalidOperationException($"{Status} is not a status code.");
        HasStarted = true;
        var writer = _connection.BeginResponse();
        writer.StatusLine(Status, _connection.Date);
        if (IsBodiless(Status))
        {
        }
        else if (chunked)
        {
            writer.Header("Transfer-Encoding"u8, "chunked"u8);
        }
        else if (length >= 0)
        {
            writer.NumberHeader("Content-Length"u8, length);
        }
        writer.Connection(_connection.Head.KeepAlive && (length >= 0 || chunked || !SendsBody));
        writer.Raw(_headers.AsSpan(0, _headersLength));
        writer.End(default);
        return writer;
    }

    private void Commit(in HttpResponseWriter writer)
    {
        _connection.Commit(writer);
        if (!_connection.Head.KeepAlive)
            _connection.CloseAfterResponse();
    }
}

/// <summary>Runs a user's <see cref="HttpHandler"/> for each request.</summary>
internal sealed class HandlerResponder(HttpHandler handler) : HttpResponder
{
    public override bool TakesBodies => true;

    public override void Respond(HttpConnection connection, HttpRequestHead head, ReadOnlySpan<byte> target)
    {
        var request = connection.Request;
        var response = connection.Response;
        request.Begin();
        response.Begin();
        try
        {
            handler(request, response);
            if (!response.HasStarted)
                response.Send(ReadOnlySpan<byte>.Empty);
        }
        catch (Exception e)
        {
            Microsoft.Extensions.Logging.LoggerExtensions.LogError(connection.Logger, e, "The HTTP handler failed.");
            connection.HandlerFailed(e);
            if (!response.HasStarted)
                connection.WriteError(500, close: true);
            else
                connection.CloseAfterResponse();
        }
        finally
        {
            request.End();
        }
    }
}
