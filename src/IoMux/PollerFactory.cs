using IoMux.Interop;

namespace IoMux;

/// <summary>The front door: a <see cref="Poller"/> on the best backend for this OS.</summary>
/// <example><code>
/// using var poller = PollerFactory.Create();           // epoll on Linux; IOMUX_BACKEND=poll forces poll
/// socket.Blocking = false;                             // a blocking socket is refused (BlockingSocketException)
/// using var reg = poller.Register(socket.SafeHandle, token: 1, Interest.Readable, TriggerMode.Edge);
/// Span&lt;PollEvent&gt; events = stackalloc PollEvent[256];
/// int n = poller.Wait(events, TimeSpan.FromSeconds(1));
/// </code></example>
public static class PollerFactory
{
    /// <summary>True where IoMux runs: a POSIX system (Linux, macOS, the BSDs, illumos, Solaris); false on Windows,
    /// where every entry point (<see cref="Create()"/>, the event loop, the hosting and Kestrel extensions) throws
    /// <see cref="PlatformNotSupportedException"/>. The assemblies are not marked unsupported on Windows, so a
    /// portable app gets no platform warning (CA1416) at each call: it checks this once instead.</summary>
    public static bool IsSupported => PlatformSupport.IsSupported;

    /// <summary>A poller on the forced (<c>IOMUX_BACKEND</c>) or best available backend.</summary>
    /// <exception cref="BackendUnavailableException">The forced backend is unknown or unavailable, or none initialised.</exception>
    /// <exception cref="PlatformNotSupportedException">Windows (<see cref="IsSupported"/> is false).</exception>
    public static Poller Create() => new(BackendSelector.Default.Select().Backend);

    /// <summary>A poller on the backend called <paramref name="name"/> ("epoll", "poll", "select" ...), ignoring the environment.</summary>
    /// <exception cref="BackendUnavailableException">Unknown or unavailable here.</exception>
    public static Poller Create(string name) => new(BackendSelector.Default.SelectNamed(name).Backend);

    /// <summary>A poller on the first backend of <paramref name="kind"/> in this build.</summary>
    /// <exception cref="BackendUnavailableException">Not in this build or unavailable here.</exception>
    public static Poller Create(BackendKind kind)
    {
        var provider = BackendCatalog.All.FirstOrDefault(p => p.Kind == kind)
            ?? throw new BackendUnavailableException($"No {kind} backend in this build. Available here: {BackendSelector.Default.AvailableNames()}.");
        return Create(provider.Name);
    }
}
