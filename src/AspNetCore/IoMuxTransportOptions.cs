namespace IoMux.AspNetCore;

/// <summary>Where the application code of a connection runs.</summary>
public enum ApplicationScheduling
{
    /// <summary>On the thread pool, as Kestrel's socket transport does: a slow handler never holds up a loop.</summary>
    ThreadPool,
    /// <summary>Inline on the loop thread that read the bytes: no hand-off, fewer context switches; a handler that
    /// blocks holds up every connection of its loop. For handlers that do not block.</summary>
    Inline,
}

/// <summary>Options of the IoMux transport (<see cref="IoMuxWebHostBuilderExtensions.UseIoMux"/>).</summary>
public sealed class IoMuxTransportOptions
{
    /// <summary>How many event loops (one thread each) serve connections. Default: one per processor.</summary>
    public int ThreadCount { get; set; } = Environment.ProcessorCount;

    /// <summary>The IoMux backend by name ("epoll", "poll", "select" ...), or null for the best one here (an
    /// <c>IOMUX_BACKEND</c> environment variable applies then).</summary>
    public string? Backend { get; set; }

    /// <summary>Creates the backend of each loop (overrides <see cref="Backend"/>): for backends outside the catalog.</summary>
    public Func<IPollerBackend>? BackendFactory { get; set; }

    /// <summary>Where application code runs. Default: the thread pool.</summary>
    public ApplicationScheduling Scheduling { get; set; } = ApplicationScheduling.ThreadPool;

    /// <summary>Bytes read from a connection and not yet consumed by the application before the loop stops reading
    /// it (back-pressure: the peer's sends then block in its own kernel). Default 1 MiB; null: no limit.</summary>
    public long? MaxReadBufferSize { get; set; } = 1024 * 1024;

    /// <summary>Bytes written by the application and not yet sent before its writes wait (back-pressure towards
    /// the application). Default 64 KiB; null: no limit.</summary>
    public long? MaxWriteBufferSize { get; set; } = 64 * 1024;

    /// <summary>The listen(2) backlog of sockets the transport creates.</summary>
    public int Backlog { get; set; } = 512;

    internal Poller CreatePoller()
    {
        var poller = BackendFactory is { } factory ? new Poller(factory())
            : Backend is { } name ? PollerFactory.Create(name)
            : PollerFactory.Create();
        poller.UseServerSpin(); // catch the next request awake (Poller.SpinBeforeSleep)
        return poller;
    }
}
