using IoMux.Backends.Epoll;
using IoMux.Backends.EventPorts;
using IoMux.Backends.Kqueue;
using IoMux.Interop;
using IoMux.Backends.Poll;

namespace IoMux;

/// <summary>A backend IoMux knows how to build: its name, whether this OS can run it. A poller on it comes from
/// <see cref="PollerFactory.Create(string)"/> with its <see cref="Name"/>. Only IoMux makes providers: the backends
/// are internal (docs/API-REVIEW.md, "Backends").</summary>
public sealed class BackendProvider
{
    private readonly Func<string?> _unsupportedReason;
    private readonly Func<PollerBackend> _create;

    /// <param name="kind">The mechanism.</param>
    /// <param name="name">The name <c>IOMUX_BACKEND</c> accepts (also variant names such as "poll-derived").</param>
    /// <param name="description">One line for listings.</param>
    /// <param name="unsupportedReason">Returns why this OS cannot run the backend, or null when it can.</param>
    /// <param name="create">Creates the backend; may throw when the OS refuses (EMFILE, ENOSYS ...).</param>
    internal BackendProvider(BackendKind kind, string name, string description, Func<string?> unsupportedReason, Func<PollerBackend> create)
    {
        Kind = kind;
        Name = name;
        Description = description;
        _unsupportedReason = unsupportedReason;
        _create = create;
    }

    /// <summary>The mechanism.</summary>
    public BackendKind Kind { get; }

    /// <summary>The name <c>IOMUX_BACKEND</c> and <see cref="PollerFactory.Create(string)"/> accept.</summary>
    public string Name { get; }

    /// <summary>One line for listings.</summary>
    public string Description { get; }

    /// <summary>Why this OS cannot run the backend, or null when it can.</summary>
    public string? UnsupportedReason() => _unsupportedReason();

    /// <summary>True when this OS can run the backend (creation may still fail).</summary>
    public bool IsSupported => UnsupportedReason() is null;

    /// <summary>Creates the backend; may throw when the OS refuses (EMFILE, ENOSYS ...). The caller owns it.</summary>
    internal PollerBackend Create() => _create();

    /// <inheritdoc />
    public override string ToString() => Name;
}

/// <summary>The backends this build of IoMux contains, in the order each OS prefers them.</summary>
public static class BackendCatalog
{
    private static string? LinuxOnly() => OperatingSystem.IsLinux() ? null : "epoll exists on Linux only";
    private static string? PosixOnly() => OperatingSystem.IsWindows() ? "needs a POSIX system" : null;
    private static string? IllumosOnly() => Platform.IsIllumos ? null : "event ports exist on illumos and Solaris only";

    /// <summary>epoll (Linux).</summary>
    internal static readonly BackendProvider Epoll = new(BackendKind.Epoll, "epoll",
        "Linux epoll(7); eventfd wake; epoll_pwait2 for sub-millisecond timeouts", LinuxOnly, () => new EpollBackend());

    /// <summary>poll(2) (any POSIX system).</summary>
    internal static readonly BackendProvider Poll = new(BackendKind.Poll, "poll",
        "poll(2); pipe wake; edge and oneshot emulated", PosixOnly, () => new PollBackend());

    /// <summary>select(2), descriptors below FD_SETSIZE only.</summary>
    internal static readonly BackendProvider Select = new(BackendKind.Select, "select",
        "select(2); pipe wake; edge, oneshot and hangups emulated; fds below FD_SETSIZE", PosixOnly, () => new SelectBackend());

    /// <summary>Event ports (illumos, Solaris).</summary>
    internal static readonly BackendProvider EventPorts = new(BackendKind.EventPorts, "ports",
        "event ports; port_send wake; level and edge emulated over one-shot associations", IllumosOnly, () => new EventPortsBackend());

    /// <summary>kqueue (FreeBSD, macOS, the BSDs; on Linux through libkqueue when IOMUX_KQUEUE_LIBRARY is set).</summary>
    internal static readonly BackendProvider Kqueue = new(BackendKind.Kqueue, "kqueue",
        "kqueue(2); EVFILT_USER wake (pipe where absent); per-filter events merged, oneshot across filters",
        () => KqueueBackend.UnsupportedReason(), () => new KqueueBackend());

    /// <summary>Every backend in this build, best first for this OS: event ports first on illumos and Solaris
    /// (illumos's own epoll(5) says native applications should prefer them), epoll first on Linux; poll and
    /// select are the fallbacks everywhere; kqueue first on macOS and the BSDs. On Linux, kqueue (libkqueue)
    /// is never chosen automatically: <c>IOMUX_BACKEND=kqueue</c> with <c>IOMUX_KQUEUE_LIBRARY</c> forces it.</summary>
    public static IReadOnlyList<BackendProvider> All { get; } =
        Platform.IsIllumos ? [EventPorts, Poll, Select, Epoll, Kqueue]
        : OperatingSystem.IsLinux() ? [Epoll, Poll, Select, EventPorts, Kqueue]
        : [Kqueue, Poll, Select, Epoll, EventPorts];

    /// <summary>Variants that exist to prove emulated paths on Linux: the same contract, other code paths. Not public:
    /// test plumbing (the conformance runner and the tests reach it; <c>IOMUX_BACKEND=epoll-ms</c> still names them).</summary>
    internal static IReadOnlyList<BackendProvider> TestVariants { get; } =
    [
        new(BackendKind.Epoll, "epoll-ms", "epoll with epoll_wait's millisecond timeouts (no epoll_pwait2)", LinuxOnly, () => new EpollBackend(allowPwait2: false)),
        new(BackendKind.Poll, "poll-derived", "poll(2) without POLLRDHUP: read hangup derived as on systems that lack it", PosixOnly, () => new PollBackend(useNativeReadHangup: false)),
    ];

    /// <summary>Finds a backend or variant by name (case-insensitive).</summary>
    public static BackendProvider? Find(string name) =>
        All.Concat(TestVariants).FirstOrDefault(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase));

    /// <summary>The backend of <paramref name="kind"/> (every kind has one in every build; whether it runs here is
    /// <see cref="BackendProvider.IsSupported"/>).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="kind"/> is not a <see cref="BackendKind"/>.</exception>
    public static BackendProvider Find(BackendKind kind) => kind switch
    {
        BackendKind.Epoll => Epoll,
        BackendKind.Kqueue => Kqueue,
        BackendKind.EventPorts => EventPorts,
        BackendKind.Poll => Poll,
        BackendKind.Select => Select,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "not a backend kind"),
    };
}
