using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using IoMux.Web.Http;

namespace IoMux.Web;

/// <summary>The <c>IoMux.Web</c> meter (System.Diagnostics.Metrics, so dotnet-counters and OpenTelemetry read it),
/// named after OpenTelemetry's semantic conventions: <c>http.server.request.duration</c> as ASP.NET Core records it,
/// and the connection instruments after Kestrel's (<c>kestrel.connection.duration</c>, <c>kestrel.active_connections</c>)
/// under the <c>iomux.web.</c> prefix, since these are IoMux's connections, not Kestrel's. Nothing costs anything
/// while nobody listens: the connection counts are observed from the fields the loops keep anyway, and the clock is
/// read for a histogram only while it is <see cref="Instrument.Enabled"/>. Tags are pre-built boxed pairs in a
/// <see cref="TagList"/> (inline up to eight), so recording allocates nothing on the request path.</summary>
internal static class WebMetrics
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "IoMux.Web";

    // The attribute names, as OpenTelemetry's semantic conventions spell them.
    public const string MethodTag = "http.request.method", StatusTag = "http.response.status_code", SchemeTag = "url.scheme",
        VersionTag = "network.protocol.version", ErrorTag = "error.type", ProtocolTag = "network.protocol.name",
        TransportTag = "network.transport", NetworkTypeTag = "network.type", AddressTag = "server.address", PortTag = "server.port";

    /// <summary>ASP.NET Core's buckets for http.server.request.duration (seconds; MetricsConstants.ShortSecondsBucketBoundaries).</summary>
    internal static readonly double[] ShortSeconds = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];

    /// <summary>ASP.NET Core's buckets for kestrel.connection.duration (seconds; MetricsConstants.LongSecondsBucketBoundaries).</summary>
    internal static readonly double[] LongSeconds = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300];

    private static readonly Meter Meter = new(MeterName, typeof(WebMetrics).Assembly.GetName().Version?.ToString());

    internal static readonly Histogram<double> RequestDuration = Meter.CreateHistogram("http.server.request.duration", "s",
        "Duration of HTTP server requests: from the complete request head to the last byte of the response in the socket.",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = ShortSeconds });

    internal static readonly Histogram<double> ConnectionDuration = Meter.CreateHistogram("iomux.web.connection.duration", "s",
        "Duration of HTTP connections, from accept to close (as kestrel.connection.duration).",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LongSeconds });

    private static readonly Counter<long> AcceptPauses = Meter.CreateCounter<long>("iomux.web.accept.pauses", "{pause}",
        "Times a listener stopped accepting for a while because the process or system ran out of descriptors or memory.");

    // One boxed tag per status code 100..999, built once: a pre-built pair allocates nothing when recorded.
    private static readonly KeyValuePair<string, object?>[] StatusTags =
        Enumerable.Range(100, 900).Select(code => new KeyValuePair<string, object?>(StatusTag, code)).ToArray();

    // error.type for a 5xx answered without an exception: the status code as a string (the semantic conventions'
    // choice when nothing more specific is known), built once.
    private static readonly KeyValuePair<string, object?>[] ServerErrorTags =
        Enumerable.Range(500, 100).Select(code => new KeyValuePair<string, object?>(ErrorTag, code.ToString(System.Globalization.CultureInfo.InvariantCulture))).ToArray();

    private static readonly KeyValuePair<string, object?> HttpScheme = new(SchemeTag, "http"), HttpProtocol = new(ProtocolTag, "http"),
        Version11 = new(VersionTag, "1.1"), Version10 = new(VersionTag, "1.0");

    // The request methods the semantic conventions name; any other is recorded as "_OTHER" (bounded cardinality).
    private static readonly KeyValuePair<string, object?>[] MethodTags =
        new[] { "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "_OTHER" }
            .Select(method => new KeyValuePair<string, object?>(MethodTag, method)).ToArray();

    private static readonly List<HttpWorker[]> Servers = [];
    private static long _retiredAccepted; // connections accepted by servers already disposed (the counter is monotonic)

    static WebMetrics()
    {
        Meter.CreateObservableUpDownCounter("iomux.web.active_connections", () => Sum(w => w.Connections), "{connection}",
            "Open HTTP connections, every server and thread (as kestrel.active_connections).");
        Meter.CreateObservableCounter("iomux.web.accepted_connections", ObserveAccepted, "{connection}",
            "HTTP connections accepted since the process started.");
    }

    /// <summary>A timestamp to measure a request or connection from, or 0 while nobody listens to <paramref name="histogram"/>.</summary>
    public static long Start(Histogram<double> histogram) => histogram.Enabled ? Stopwatch.GetTimestamp() : 0;

    /// <summary>The index of the method tag for <paramref name="method"/> (the request line's token).</summary>
    public static byte MethodIndex(ReadOnlySpan<byte> method)
    {
        // Ordered by how often a server sees them; the index is what the connection keeps (no string per request).
        if (method.SequenceEqual("GET"u8)) return 0;
        if (method.SequenceEqual("HEAD"u8)) return 1;
        if (method.SequenceEqual("POST"u8)) return 2;
        if (method.SequenceEqual("PUT"u8)) return 3;
        if (method.SequenceEqual("DELETE"u8)) return 4;
        if (method.SequenceEqual("PATCH"u8)) return 5;
        if (method.SequenceEqual("OPTIONS"u8)) return 6;
        if (method.SequenceEqual("TRACE"u8)) return 7;
        if (method.SequenceEqual("CONNECT"u8)) return 8;
        return OtherMethod;
    }

    /// <summary>The index of "_OTHER" among the method tags.</summary>
    public const byte OtherMethod = 9;

    /// <summary>One request answered with <paramref name="status"/>, measured from <paramref name="started"/> (0: not
    /// measured). <paramref name="error"/> is the error.type (an exception's type, a reason) or null; a 5xx without
    /// one gets its status code, as the semantic conventions ask.</summary>
    public static void RequestDone(long started, byte method, int version, int status, string? error)
    {
        if (started == 0)
            return;
        var tags = new TagList { MethodTags[method], HttpScheme };
        if (status >= 100)
            tags.Add(StatusTags[Math.Min(status, 999) - 100]);
        if (version is 10 or 11)
            tags.Add(version == 11 ? Version11 : Version10);
        if (error is not null)
            tags.Add(ErrorTag, error);
        else if (status is >= 500 and <= 599)
            tags.Add(ServerErrorTags[status - 500]);
        RequestDuration.Record(Stopwatch.GetElapsedTime(started).TotalSeconds, tags);
    }

    /// <summary>One connection closed, measured from <paramref name="started"/> (0: not measured).</summary>
    public static void ConnectionDone(long started, EndpointTags endpoint, int version, string? error)
    {
        if (started == 0)
            return;
        var tags = new TagList { HttpProtocol, endpoint.Transport, endpoint.NetworkType, endpoint.Address, endpoint.Port };
        if (version is 10 or 11)
            tags.Add(version == 11 ? Version11 : Version10);
        if (error is not null)
            tags.Add(ErrorTag, error);
        ConnectionDuration.Record(Stopwatch.GetElapsedTime(started).TotalSeconds, tags);
    }

    /// <summary>A listener paused accepting.</summary>
    public static void AcceptPaused()
    {
        if (AcceptPauses.Enabled)
            AcceptPauses.Add(1);
    }

    public static void Register(HttpWorker[] workers)
    {
        lock (Servers)
            Servers.Add(workers);
    }

    public static void Unregister(HttpWorker[] workers)
    {
        lock (Servers)
        {
            Servers.Remove(workers);
            _retiredAccepted += workers.Sum(w => w.Accepted);
        }
    }

    private static long ObserveAccepted()
    {
        lock (Servers)
            return Sum(w => w.Accepted) + _retiredAccepted;
    }

    private static long Sum(Func<HttpWorker, long> measure)
    {
        lock (Servers)
            return Servers.Sum(workers => workers.Sum(measure));
    }

    /// <summary>A listener's connection attributes, boxed once per server (Kestrel's set for kestrel.connection.duration).</summary>
    internal sealed class EndpointTags(IPEndPoint endpoint)
    {
        /// <summary>For a worker made without a server (the fuzz targets).</summary>
        public static readonly EndpointTags Unknown = new(new IPEndPoint(IPAddress.Any, 0));

        public readonly KeyValuePair<string, object?> Transport = new(TransportTag, "tcp");
        public readonly KeyValuePair<string, object?> NetworkType = new(NetworkTypeTag, endpoint.AddressFamily == AddressFamily.InterNetworkV6 ? "ipv6" : "ipv4");
        public readonly KeyValuePair<string, object?> Address = new(AddressTag, endpoint.Address.ToString());
        public readonly KeyValuePair<string, object?> Port = new(PortTag, endpoint.Port);
    }
}

/// <summary>The error.type values a connection of IoMux.Web ends with: Kestrel's names where the reason is the same
/// (aspnetcore src/Servers/Kestrel/Core/src/Internal/Infrastructure/KestrelMetrics.cs, TryGetErrorType), IoMux's own
/// where Kestrel has no such ending.</summary>
internal static class ConnectionEndReasons
{
    public const string ConnectionReset = "connection_reset";
    public const string RequestHeadersTimeout = "request_headers_timeout";
    public const string InvalidRequestHeaders = "invalid_request_headers";
    public const string InvalidRequestLine = "invalid_request_line";
    public const string InvalidHttpVersion = "invalid_http_version";
    public const string MaxRequestBodySizeExceeded = "max_request_body_size_exceeded";
    public const string MaxRequestHeadersTotalSizeExceeded = "max_request_headers_total_size_exceeded";
    public const string ResponseContentLengthMismatch = "response_content_length_mismatch";
    /// <summary>IoMux's own: the client took no more of the response for HttpServerOptions.SendTimeout (nginx's send_timeout).</summary>
    public const string SendTimeout = "send_timeout";
    /// <summary>A response body source failed after the head was sent (Kestrel's ErrorAfterStartingResponse).</summary>
    public const string ErrorAfterStartingResponse = "error_after_starting_response";
    /// <summary>IoMux's own: the handler threw and the connection was closed after its 500 (Kestrel answers 500 and
    /// keeps the connection, so it has no value for this).</summary>
    public const string AppError = "app_error";
    /// <summary>IoMux's own: the response ended before its last byte (the connection closed under it).</summary>
    public const string ResponseIncomplete = "response_incomplete";
    /// <summary>IoMux's own: content sent with a method the resource does not take (405, closed: the content is unread).</summary>
    public const string MethodNotAllowed = "method_not_allowed";

    /// <summary>The reason a malformed request closes its connection, by the status it is answered with.</summary>
    public static string ForStatus(int status) => status switch
    {
        405 => MethodNotAllowed,
        413 => MaxRequestBodySizeExceeded,
        414 => InvalidRequestLine,
        431 => MaxRequestHeadersTotalSizeExceeded,
        505 => InvalidHttpVersion,
        _ => InvalidRequestHeaders,
    };
}
