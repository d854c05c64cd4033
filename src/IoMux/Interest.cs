namespace IoMux;

/// <summary>The directions a registration asks to be told about.</summary>
[Flags]
public enum Interest : byte
{
    /// <summary>No direction: the registration keeps its slot but is paused (flow control). Nothing is reported
    /// for it on any backend, not even <see cref="Readiness.Error"/> or <see cref="Readiness.Hangup"/> (epoll,
    /// which cannot mask those, gets the registration disarmed until interest returns).</summary>
    None = 0,
    /// <summary>Data (or a connection, or end of stream) can be read without blocking.</summary>
    Readable = 1,
    /// <summary>Data can be written without blocking.</summary>
    Writable = 2,
    /// <summary>Urgent / out-of-band data is pending (EPOLLPRI, POLLPRI, select's except set).</summary>
    Priority = 4,
    /// <summary>Not a direction: when several pollers (one per loop thread) watch the same descriptor, wake only
    /// one of them per event instead of all (EPOLLEXCLUSIVE, Linux 4.5+): the cure for the thundering herd on a
    /// listener shared by loops. Given at registration only (epoll refuses to modify such a registration, and
    /// IoMux says so with <see cref="NotSupportedException"/>); backends without it ignore the flag and wake every
    /// poller, which stays correct, only slower. Meant for listening sockets: epoll does not allow EPOLLRDHUP
    /// beside it, so such a registration is not told of <see cref="Readiness.ReadHangup"/>, and it cannot be oneshot.</summary>
    Exclusive = 8,
}

/// <summary>How a registration reports readiness.</summary>
public enum TriggerMode : byte
{
    /// <summary>Reported on every wait while the condition holds.</summary>
    Level = 0,
    /// <summary>Reported when readiness arises; not again for that direction until the consumer has
    /// hit would-block in it (or, on kernels with native edge mode, until new readiness arrives).</summary>
    Edge = 1,
    /// <summary>Reported once; the whole registration (every direction) is then disarmed until
    /// <see cref="Registration.Modify(Interest, TriggerMode)"/> re-arms it.</summary>
    Oneshot = 2,
}

/// <summary>What a wait found ready for one registration. Several flags arrive together in one event.</summary>
[Flags]
public enum Readiness : ushort
{
    /// <summary>Nothing.</summary>
    None = 0,
    /// <summary>A read will not block: data, a pending connection, end of stream or an error.</summary>
    Readable = 1,
    /// <summary>A write will not block (it may still fail, e.g. with EPIPE).</summary>
    Writable = 2,
    /// <summary>Urgent / out-of-band data is pending.</summary>
    Priority = 4,
    /// <summary>The peer closed its writing side (or this side shut reading): reads will drain what is
    /// buffered and then return 0. Reported with <see cref="Readable"/>. Never reported when it did not happen.</summary>
    ReadHangup = 8,
    /// <summary>Neither direction can carry data any more (pipe writer gone, both sides shut).</summary>
    Hangup = 16,
    /// <summary>An error is pending on the descriptor; the next read or write returns it.</summary>
    Error = 32,
}
