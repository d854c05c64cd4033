using System.Diagnostics.Metrics;
using IoMux.Loop;
using IoMux.Interop;

namespace IoMux.SocketProxy;

/// <summary>The <c>IoMux.Proxy</c> meter: connections, bytes each way, backend connect failures and accept pauses of
/// every <see cref="ProxyServer"/> in the process (<c>dotnet-counters monitor --counters IoMux.Proxy</c>). Observable
/// instruments over the counters the proxy keeps anyway (<see cref="ProxyCounters"/>): nothing is recorded per event,
/// so the meter costs nothing while nobody listens. Made with the first proxy of the process, or later when the
/// process defers it (<see cref="MeterPublication"/>: iomux-socket-proxyd does, past its first byte).</summary>
public static class ProxyMetrics
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "IoMux.Proxy";

    private const int Accepted = 0, Closed = 1, ToBackend = 2, ToClients = 3, AcceptPauses = 4, ConnectFailures = 5;

    /// <summary>The error.type values of iomux.proxy.connect.failures, in the order of
    /// <see cref="ProxyServer.ConnectFailures"/> (low cardinality: any other errno is "_OTHER").</summary>
    internal static readonly string[] ConnectErrorTypes = ["connection_refused", "timeout", "name_resolution_error", "host_unreachable", "network_unreachable", "_OTHER"];

    internal static readonly MeteredInstances<ProxyServer> Proxies = new(Publish, [
        proxy => proxy.Counters.Accepted, proxy => proxy.Counters.Closed, proxy => proxy.Counters.BytesToBackend,
        proxy => proxy.Counters.BytesToClients, proxy => proxy.AcceptPauses,
        .. ConnectErrorTypes.Select((_, kind) => (Func<ProxyServer, long>)(proxy => proxy.ConnectFailures[kind]))]);

    /// <summary>The direction attribute, namespaced (OpenTelemetry: attributes of one library under its own prefix).</summary>
    public const string DirectionTag = "iomux.proxy.direction";

    private static readonly KeyValuePair<string, object?> ToBackendTag = new(DirectionTag, "to_backend");
    private static readonly KeyValuePair<string, object?> ToClientsTag = new(DirectionTag, "to_clients");

    /// <summary>The error.type of a failed backend connect: <paramref name="resolving"/> (the name did not resolve)
    /// or by errno.</summary>
    internal static int ConnectErrorKind(int errno, bool resolving) =>
        resolving ? 2
        : errno == Errno.ECONNREFUSED ? 0
        : errno == Errno.ETIMEDOUT ? 1
        : Errno.Name(errno) switch { "EHOSTUNREACH" => 3, "ENETUNREACH" => 4, _ => 5 };

    /// <summary>Makes the meter and its instruments (once: <see cref="MeteredInstances{T}"/> asks with its first
    /// instance). The runtime holds a meter until it is disposed; this one lives as long as the process.</summary>
    private static void Publish()
    {
        var meter = new Meter(MeterName);
        meter.CreateObservableCounter("iomux.proxy.connections", () => Proxies.Sum(Accepted), "{connection}",
            "Connections accepted.");
        // Accepted minus closed, both read from counters: no gauge to keep in step on the connection path.
        meter.CreateObservableUpDownCounter("iomux.proxy.active_connections",
            () => Proxies.Sum(Accepted, includeRetired: false) - Proxies.Sum(Closed, includeRetired: false), "{connection}",
            "Connections open now.");
        meter.CreateObservableCounter("iomux.proxy.io", () => new[]
        {
            new Measurement<long>(Proxies.Sum(ToBackend), ToBackendTag),
            new Measurement<long>(Proxies.Sum(ToClients), ToClientsTag),
        }, "By", "Bytes relayed, by iomux.proxy.direction (to_backend: from clients; to_clients: from the backend).");
        meter.CreateObservableCounter("iomux.proxy.connect.failures", () => ConnectErrorTypes.Select((type, kind) =>
                new Measurement<long>(Proxies.Sum(ConnectFailures + kind), new KeyValuePair<string, object?>("error.type", type))).ToArray(),
            "{connection}", "Backend connects that failed, by error.type (refused, timeout, name resolution, unreachable).");
        meter.CreateObservableCounter("iomux.proxy.accept.pauses", () => Proxies.Sum(AcceptPauses), "{pause}",
            "Times accepting stopped for want of descriptors (the clients wait in the listen backlog).");
    }
}
