using System.Diagnostics.Metrics;
using IoMux.Web.Http;

namespace IoMux.Web;

/// <summary>The <c>IoMux.Web</c> meter (System.Diagnostics.Metrics, so dotnet-counters and OpenTelemetry read it):
/// responses by status code, open and accepted connections of every <see cref="HttpServer"/>, accept pauses.
/// Nothing costs anything while nobody listens: the connection counts are observed from the fields the loops keep
/// anyway (read only when a listener collects), and the two counters are touched only when
/// <see cref="Instrument.Enabled"/>, with tags from pre-built arrays, so the request path never allocates. The names
/// follow IoMux.Proxy's (iomux.proxy.connections, .connections.active, .accept.pauses).</summary>
internal static class WebMetrics
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "IoMux.Web";

    /// <summary>The status tag's name, as OpenTelemetry's HTTP semantic conventions spell it.</summary>
    public const string StatusTag = "http.response.status_code";

    private static readonly Meter Meter = new(MeterName, typeof(WebMetrics).Assembly.GetName().Version?.ToString());

    private static readonly Counter<long> Responses = Meter.CreateCounter<long>("iomux.web.requests", "{request}",
        "Responses sent (every request answered, malformed ones included), tagged with http.response.status_code.");

    private static readonly Counter<long> AcceptPauses = Meter.CreateCounter<long>("iomux.web.accept.pauses", "{pause}",
        "Times a listener stopped accepting for a while because the process or system ran out of descriptors or memory.");

    // One boxed tag per status code 100..999, built once: Counter.Add with a pre-built pair allocates nothing.
    private static readonly KeyValuePair<string, object?>[] StatusTags =
        Enumerable.Range(100, 900).Select(code => new KeyValuePair<string, object?>(StatusTag, code)).ToArray();

    private static readonly List<HttpWorker[]> Servers = [];
    private static long _retiredAccepted; // connections accepted by servers already disposed (the counter is monotonic)

    static WebMetrics()
    {
        Meter.CreateObservableUpDownCounter("iomux.web.connections.active", () => Sum(w => w.Connections), "{connection}",
            "Open HTTP connections, every server and thread.");
        Meter.CreateObservableCounter("iomux.web.connections", ObserveAccepted, "{connection}",
            "HTTP connections accepted since the process started.");
    }

    /// <summary>One response with <paramref name="status"/> went out.</summary>
    public static void Response(int status)
    {
        if (Responses.Enabled)
            Responses.Add(1, StatusTags[Math.Clamp(status, 100, 999) - 100]);
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
}
