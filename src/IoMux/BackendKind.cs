namespace IoMux;

/// <summary>The kernel mechanism behind a backend.</summary>
public enum BackendKind
{
    /// <summary>Linux epoll(7).</summary>
    Epoll,
    /// <summary>kqueue(2): FreeBSD, macOS and the other BSDs.</summary>
    Kqueue,
    /// <summary>Event ports: illumos and Solaris.</summary>
    EventPorts,
    /// <summary>poll(2): any POSIX system.</summary>
    Poll,
    /// <summary>select(2): the last resort; descriptors below FD_SETSIZE only.</summary>
    Select,
}

/// <summary>What a backend does natively and what IoMux emulates on top of it. Emulated or native, the
/// observable behaviour is the one in docs/SEMANTICS.md; these flags tell the cost, not the contract. Read it through
/// <see cref="Poller.Capabilities"/>. Its properties are set by IoMux's backends only (there is no public
/// constructor), so a property added later breaks no caller, as a positional parameter would.</summary>
public readonly record struct BackendCapabilities
{
    /// <summary>The mechanism.</summary>
    public BackendKind Kind { get; internal init; }

    /// <summary>The name accepted by <c>IOMUX_BACKEND</c>.</summary>
    public string Name { get; internal init; }

    /// <summary>The kernel has an edge-triggered mode (EPOLLET, EV_CLEAR); otherwise edge mode is emulated by
    /// disarming a direction after reporting it until the consumer hits would-block.</summary>
    public bool NativeEdge { get; internal init; }

    /// <summary>The kernel disarms a registration after one event (EPOLLONESHOT, ports).</summary>
    public bool NativeOneshot { get; internal init; }

    /// <summary>The kernel reports a peer half-close by itself (EPOLLRDHUP, POLLRDHUP, EV_EOF); otherwise it is
    /// derived from a zero-byte readable probe when the registration reads.</summary>
    public bool NativeReadHangup { get; internal init; }

    /// <summary>The finest timeout the wait call honours; finer timeouts are rounded up.</summary>
    public TimeSpan TimeoutResolution { get; internal init; }

    /// <summary>The highest descriptor number the backend accepts (FD_SETSIZE - 1 for select), or
    /// <see cref="int.MaxValue"/> when only the process limit applies.</summary>
    public int MaxDescriptor { get; internal init; }

    /// <summary>The kernel reports urgent (out-of-band) data, so <see cref="Interest.Priority"/> is accepted. False
    /// on kqueue where the OS has no filter for it (FreeBSD, NetBSD, DragonFly): registering Priority there throws
    /// <see cref="NotSupportedException"/> naming the OS (docs/SEMANTICS.md, row P1).</summary>
    public bool NativePriority { get; internal init; }
}
