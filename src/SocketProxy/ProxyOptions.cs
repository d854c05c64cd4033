namespace IoMux.SocketProxy;

/// <summary>What the proxy was asked to do; see <c>iomux-socket-proxyd --help</c>.</summary>
public sealed class ProxyOptions
{
    /// <summary>systemd-socket-proxyd's default for <c>--connections-max</c>.</summary>
    public const int DefaultConnectionsMax = 256;

    /// <summary>Where connections go.</summary>
    public required BackendTarget Target { get; init; }

    /// <summary>The connection limit, read as systemd-socket-proxyd reads it: a client that finds more than this
    /// many connections open is accepted and closed at once (so up to ConnectionsMax + 1 are relayed, systemd's
    /// <c>&gt;</c>); with <see cref="QueueAtLimit"/>, at most this many are open and the next clients wait in the
    /// kernel's backlog instead.</summary>
    public int ConnectionsMax { get; init; } = DefaultConnectionsMax;

    /// <summary>IoMux's own behaviour at the limit (<c>--at-limit=queue</c>): stop polling the listeners at
    /// <see cref="ConnectionsMax"/> open connections, so that clients wait in the backlog rather than being refused.</summary>
    public bool QueueAtLimit { get; init; }

    /// <summary>Exit after this long without a connection, counted from the end of the first (as systemd-socket-proxyd:
    /// a proxy that never had one does not exit); null: never.</summary>
    public TimeSpan? ExitIdleTime { get; init; }

    /// <summary>How long a backend connect may take before the client is closed.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>After SIGTERM or SIGINT: how long active connections may go on before they are closed. Zero (the
    /// default, <c>--drain-time</c> absent): closed at once and the proxy exits, as systemd-socket-proxyd does.</summary>
    public TimeSpan DrainTime { get; init; } = TimeSpan.Zero;

    /// <summary>After EMFILE (or ENFILE, ENOBUFS, ENOMEM) on accept: how long accepting pauses.</summary>
    public TimeSpan AcceptRetryDelay { get; init; } = TimeSpan.FromMilliseconds(200);

    /// <summary>Splice on Linux, read/write elsewhere.</summary>
    public CopyMode CopyMode { get; init; } = OperatingSystem.IsLinux() ? CopyMode.Splice : CopyMode.Buffer;
}
