using System.Buffers.Text;
using System.Text;

namespace IoMux.Web.Http;

/// <summary>Writes a response head (and a small body) into a connection's output buffer, allocation-free.</summary>
internal ref struct HttpResponseWriter
{
    private readonly Span<byte> _buffer;
    private int _length;

    internal HttpResponseWriter(Span<byte> buffer)
    {
        _buffer = buffer;
        _length = 0;
    }

    /// <summary>Bytes written so far.</summary>
    public readonly int Length => _length;

    /// <summary>The status written by <see cref="Head"/> (0 before).</summary>
    internal int Status { get; private set; }

    /// <summary>Status line plus Server, Date, Content-Length and Connection.</summary>
    public void Head(int status, long contentLength, bool keepAlive, ReadOnlySpan<byte> date)
    {
        StatusLine(status, date);
        Append("Content-Length: "u8);
        Number(contentLength);
        Append("\r\n"u8);
        Connection(keepAlive);
    }

    /// <summary>Status line, Server and Date: a head whose framing headers follow (or, for 304, none at all).</summary>
    internal void StatusLine(int status, ReadOnlySpan<byte> date)
    {
        Status = status;
        Append("HTTP/1.1 "u8);
        Number(status);
        Append(" "u8);
        Append(Reason(status));
        Append("\r\nServer: iomux\r\nDate: "u8);
        Append(date);
        Append("\r\n"u8);
    }

    internal void Connection(bool keepAlive) =>
        Append(keepAlive ? "Connection: keep-alive\r\n"u8 : "Connection: close\r\n"u8);

    /// <summary>One header line whose value is a number.</summary>
    internal void NumberHeader(ReadOnlySpan<byte> name, long value)
    {
        Append(name);
        Append(": "u8);
        Number(value);
        Append("\r\n"u8);
    }

    /// <summary>Header lines already formatted (name, colon, value, CRLF each).</summary>
    internal void Raw(ReadOnlySpan<byte> lines) => Append(lines);

    /// <summary>Bytes of the buffer still free.</summary>
    internal readonly int Free => _buffer.Length - _length;

    /// <summary>One header line.</summary>
    public void Header(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        Append(name);
        Append(": "u8);
        Append(value);
        Append("\r\n"u8);
    }

    /// <summary>Ends the head; <paramref name="body"/> (may be empty) follows it.</summary>
    public void End(ReadOnlySpan<byte> body)
    {
        Append("\r\n"u8);
        Append(body);
    }

    internal void Append(scoped ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(_buffer[_length..]);
        _length += bytes.Length;
    }

    internal void Number(long value)
    {
        Utf8Formatter.TryFormat(value, _buffer[_length..], out int written);
        _length += written;
    }

    /// <summary>The reason phrase for the statuses these servers send.</summary>
    public static ReadOnlySpan<byte> Reason(int status) => status switch
    {
        100 => "Continue"u8,
        200 => "OK"u8,
        201 => "Created"u8,
        202 => "Accepted"u8,
        204 => "No Content"u8,
        206 => "Partial Content"u8,
        301 => "Moved Permanently"u8,
        302 => "Found"u8,
        303 => "See Other"u8,
        304 => "Not Modified"u8,
        307 => "Temporary Redirect"u8,
        308 => "Permanent Redirect"u8,
        400 => "Bad Request"u8,
        401 => "Unauthorized"u8,
        403 => "Forbidden"u8,
        404 => "Not Found"u8,
        405 => "Method Not Allowed"u8,
        408 => "Request Timeout"u8,
        409 => "Conflict"u8,
        410 => "Gone"u8,
        411 => "Length Required"u8,
        412 => "Precondition Failed"u8,
        413 => "Content Too Large"u8,
        414 => "URI Too Long"u8,
        415 => "Unsupported Media Type"u8,
        416 => "Range Not Satisfiable"u8,
        422 => "Unprocessable Content"u8,
        429 => "Too Many Requests"u8,
        431 => "Request Header Fields Too Large"u8,
        500 => "Internal Server Error"u8,
        501 => "Not Implemented"u8,
        502 => "Bad Gateway"u8,
        503 => "Service Unavailable"u8,
        504 => "Gateway Timeout"u8,
        505 => "HTTP Version Not Supported"u8,
        _ => "Unknown"u8,
    };
}

/// <summary>The Date header's value, formatted once per second into a fixed buffer (RFC 9110 IMF-fixdate).</summary>
internal sealed class HttpDate
{
    private readonly byte[] _value = new byte[29];
    private long _second = -1;

    public ReadOnlySpan<byte> Current
    {
        get
        {
            var now = DateTime.UtcNow;
            long second = now.Ticks / TimeSpan.TicksPerSecond;
            if (second != _second)
            {
                _second = second;
                now.TryFormat(_value, out _, "r", System.Globalization.CultureInfo.InvariantCulture);
            }
            return _value;
        }
    }
}

/// <summary>Content types by file extension: the types a browser checks before it uses a file (module scripts
/// need a JavaScript type, RFC 9239 §6 registers .js and .mjs as text/javascript; WebAssembly streaming compilation
/// needs application/wasm; fonts, images, media), after Debian 12's nginx mime.types (1.22.1) where it has the
/// extension, and the IANA media types registry where it does not (.mjs, .map, .md, .csv, .webmanifest, .gz, .tar,
/// .flac, .vtt, .ttf, .otf, .wav). Text types carry charset=utf-8 where a browser would otherwise guess.</summary>
internal static class ContentTypes
{
    // The most common extensions first: the lookup is a short linear scan, allocation-free.
    private static readonly (byte[] Extension, byte[] Type)[] Known =
    [
        ("html"u8.ToArray(), "text/html; charset=utf-8"u8.ToArray()),
        ("htm"u8.ToArray(), "text/html; charset=utf-8"u8.ToArray()),
        ("css"u8.ToArray(), "text/css"u8.ToArray()),
        ("js"u8.ToArray(), "text/javascript"u8.ToArray()),
        ("mjs"u8.ToArray(), "text/javascript"u8.ToArray()),
        ("json"u8.ToArray(), "application/json"u8.ToArray()),
        ("map"u8.ToArray(), "application/json"u8.ToArray()),
        ("png"u8.ToArray(), "image/png"u8.ToArray()),
        ("jpg"u8.ToArray(), "image/jpeg"u8.ToArray()),
        ("jpeg"u8.ToArray(), "image/jpeg"u8.ToArray()),
        ("gif"u8.ToArray(), "image/gif"u8.ToArray()),
        ("svg"u8.ToArray(), "image/svg+xml"u8.ToArray()),
        ("webp"u8.ToArray(), "image/webp"u8.ToArray()),
        ("avif"u8.ToArray(), "image/avif"u8.ToArray()),
        ("ico"u8.ToArray(), "image/x-icon"u8.ToArray()),
        ("bmp"u8.ToArray(), "image/bmp"u8.ToArray()),
        ("tif"u8.ToArray(), "image/tiff"u8.ToArray()),
        ("tiff"u8.ToArray(), "image/tiff"u8.ToArray()),
        ("woff2"u8.ToArray(), "font/woff2"u8.ToArray()),
        ("woff"u8.ToArray(), "font/woff"u8.ToArray()),
        ("ttf"u8.ToArray(), "font/ttf"u8.ToArray()),
        ("otf"u8.ToArray(), "font/otf"u8.ToArray()),
        ("eot"u8.ToArray(), "application/vnd.ms-fontobject"u8.ToArray()),
        ("wasm"u8.ToArray(), "application/wasm"u8.ToArray()),
        ("txt"u8.ToArray(), "text/plain; charset=utf-8"u8.ToArray()),
        ("md"u8.ToArray(), "text/markdown; charset=utf-8"u8.ToArray()),
        ("csv"u8.ToArray(), "text/csv; charset=utf-8"u8.ToArray()),
        ("xml"u8.ToArray(), "text/xml"u8.ToArray()),
        ("xhtml"u8.ToArray(), "application/xhtml+xml"u8.ToArray()),
        ("atom"u8.ToArray(), "application/atom+xml"u8.ToArray()),
        ("rss"u8.ToArray(), "application/rss+xml"u8.ToArray()),
        ("webmanifest"u8.ToArray(), "application/manifest+json"u8.ToArray()),
        ("pdf"u8.ToArray(), "application/pdf"u8.ToArray()),
        ("zip"u8.ToArray(), "application/zip"u8.ToArray()),
        ("gz"u8.ToArray(), "application/gzip"u8.ToArray()),
        ("tar"u8.ToArray(), "application/x-tar"u8.ToArray()),
        ("7z"u8.ToArray(), "application/x-7z-compressed"u8.ToArray()),
        ("mp4"u8.ToArray(), "video/mp4"u8.ToArray()),
        ("webm"u8.ToArray(), "video/webm"u8.ToArray()),
        ("mov"u8.ToArray(), "video/quicktime"u8.ToArray()),
        ("mpeg"u8.ToArray(), "video/mpeg"u8.ToArray()),
        ("mpg"u8.ToArray(), "video/mpeg"u8.ToArray()),
        ("mp3"u8.ToArray(), "audio/mpeg"u8.ToArray()),
        ("ogg"u8.ToArray(), "audio/ogg"u8.ToArray()),
        ("oga"u8.ToArray(), "audio/ogg"u8.ToArray()),
        ("m4a"u8.ToArray(), "audio/x-m4a"u8.ToArray()),
        ("wav"u8.ToArray(), "audio/wav"u8.ToArray()),
        ("flac"u8.ToArray(), "audio/flac"u8.ToArray()),
        ("vtt"u8.ToArray(), "text/vtt; charset=utf-8"u8.ToArray()),
    ];

    public static readonly byte[] Default = "application/octet-stream"u8.ToArray();

    /// <summary>The type for a path's extension (ASCII case-insensitive), else application/octet-stream.</summary>
    public static byte[] For(ReadOnlySpan<byte> path)
    {
        int dot = path.LastIndexOf((byte)'.');
        if (dot < 0 || path[dot..].Contains((byte)'/'))
            return Default;
        var extension = path[(dot + 1)..];
        foreach (var (known, type) in Known)
            if (Ascii.EqualsIgnoreCase(extension, known))
                return type;
        return Default;
    }
}
