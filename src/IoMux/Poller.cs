using System.Runtime.InteropServices;
using IoMux.Interop;

namespace IoMux;

/// <summary>
/// Waits on many descriptors at once through one backend (chosen by <c>PollerFactory</c>), with the semantics of
/// docs/SEMANTICS.md on every backend. The poller adds what backends should not each re-implement:
/// registration objects for <see cref="SafeHandle"/>s (a closed handle's number is never reported, even when
/// reused), the one-waiter rule and safe disposal while another thread waits. The registrations themselves live in
/// the backend's one table (with the lock that guards it): the poller keeps no map of its own.
/// Events of a deregistered or replaced registration are dropped by the backends themselves
/// (<see cref="DescriptorTable"/> tags kernel registrations with a generation), so a wait passes the
/// backend's events through untouched: one pass over the events, not two.
/// </summary>
/// <remarks>Register, modify, deregister and <see cref="Wake"/> are safe from any thread; one thread waits at a time.</remarks>
public sealed class Poller : IDisposable
{
    private const int Idle = 0, Waiting = 1, Disposed = 2, DisposedWhileWaiting = 3;

    private readonly PollerBackend _backend;
    private int _state;

    /// <summary>Wraps <paramref name="backend"/>; the poller owns it from now on and disposes it.</summary>
    internal Poller(PollerBackend backend)
    {
        _backend = backend ?? throw new ArgumentNullException(nameof(backend));
        if (SpinFromEnvironment() is { } spin)
            SpinBeforeSleep = spin;
    }

    /// <summary>The backend's capabilities (which mechanism, what is native, what is emulated).</summary>
    public BackendCapabilities Capabilities => _backend.Capabilities;

    /// <summary>The backend's diagnostic counters.</summary>
    public BackendCounters Counters => _backend.Counters;

    /// <summary>The poller's own kernel descriptor, which polls readable while a registration has an event to report,
    /// for waiting on this poller from another event loop (sd_event_get_fd's role; <c>EventLoop.Descriptor</c> builds
    /// on it); -1 when the backend has none that another poller could watch (only epoll's is offered: poll and select
    /// have no kernel object, kqueue and event ports are not wired up). The descriptor belongs to the poller: never
    /// close it, and never register it back in this same poller.</summary>
    public int Descriptor => _backend.PollDescriptor;

    /// <summary>How many registrations are live.</summary>
    public int RegistrationCount => _backend.Count;

    /// <summary>Registers a descriptor owned by <paramref name="handle"/>. The handle is referenced only while a
    /// registration call runs, never in between, so disposing it (a <see cref="System.Net.Sockets.Socket"/>
    /// included) is never held up by the registration. Once the handle is closed the registration reports
    /// nothing more, even if its number is reused meanwhile, and the number can be registered again (the closed
    /// registration is retired then); dispose the registration as usual, in either order. A socket's handle
    /// (<see cref="System.Net.Sockets.SafeSocketHandle"/>) must be non-blocking: set <c>Socket.Blocking = false</c>
    /// first.</summary>
    /// <exception cref="ObjectDisposedException">The handle or the poller is closed.</exception>
    /// <exception cref="BlockingSocketException">The handle is a socket in blocking mode.</exception>
    public Registration Register(SafeHandle handle, ulong token, Interest interest, TriggerMode mode = TriggerMode.Level)
    {
        ArgumentNullException.ThrowIfNull(handle);
        if (handle.IsInvalid)
            throw new ArgumentException("The handle is invalid.", nameof(handle));
        bool added = false;
        handle.DangerousAddRef(ref added); // throws ObjectDisposedException when already closed
        try
        {
            int fd = (int)handle.DangerousGetHandle();
            if (handle is System.Net.Sockets.SafeSocketHandle)
                RequireNonBlocking(fd);
            return RegisterCore(fd, token, interest, mode, handle);
        }
        finally
        {
            if (added)
                handle.DangerousRelease();
        }
    }

    /// <summary>Registers a raw descriptor the caller owns. Deregister it before closing it: a raw number
    /// closed while registered keeps its registration (a new descriptor with the same number is refused with
    /// <see cref="AlreadyRegisteredException"/>) and, on epoll, a dup of it may keep delivering events that
    /// the poller then drops.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="fd"/> is negative.</exception>
    public Registration Register(int fd, ulong token, Interest interest, TriggerMode mode = TriggerMode.Level)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fd);
        return RegisterCore(fd, token, interest, mode, null);
    }

    /// <summary>fcntl(F_GETFL) and O_NONBLOCK (LibC.O_NONBLOCK cites each OS's header): the file's own mode, so
    /// a socket the runtime made non-blocking for its async calls passes even while Socket.Blocking says true.</summary>
    private static void RequireNonBlocking(int fd)
    {
        int flags = Interop.LibC.fcntl(fd, Interop.LibC.F_GETFL, 0);
        if (flags < 0)
            throw Errno.Fail("fcntl(F_GETFL)", $"fd {fd}");
        if ((flags & Interop.LibC.O_NONBLOCK) == 0)
            throw new BlockingSocketException(fd);
    }

    private Registration RegisterCore(int fd, ulong token, Interest interest, TriggerMode mode, SafeHandle? handle)
    {
        ValidateMode(mode);
        ThrowIfDisposed();
        var registration = new Registration(this, fd, token, interest, mode, handle);
        _backend.Add(fd, token, interest, mode, handle, registration);
        return registration;
    }

    internal void Modify(Registration registration, Interest interest, TriggerMode mode)
    {
        ValidateMode(mode);
        ThrowIfDisposed();
        bool entered = registration.Enter(); // ObjectDisposedException once the registered handle is closed
        try
        {
            _backend.Modify(registration, interest, mode);
        }
        finally
        {
            registration.Exit(entered);
        }
    }

    internal void Deregister(Registration registration, bool closing)
    {
        if (registration.IsActive)
            _backend.Delete(registration, closing);
    }

    internal void NotifyWouldBlock(Registration registration, Interest directions)
    {
        if (registration.IsActive && _state < Disposed)
            _backend.NotifyWouldBlock(registration.Descriptor, directions);
    }

    /// <summary>Waits forever for readiness or a <see cref="Wake"/>; see <see cref="Wait(Span{PollEvent}, TimeSpan)"/>.</summary>
    public int Wait(Span<PollEvent> events) => Wait(events, Timeout.InfiniteTimeSpan);

    /// <summary>
    /// Blocks until registrations are ready, <paramref name="timeout"/> passes or <see cref="Wake"/> is
    /// called, then fills <paramref name="events"/> (at most one event per registration, carrying every ready
    /// direction) and returns how many it wrote. Returns 0 on timeout, on a wake, and when another thread
    /// disposed the poller during the wait. Allocates nothing.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="events"/> is empty.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="timeout"/> is negative and not infinite.</exception>
    /// <exception cref="InvalidOperationException">Another thread is already waiting on this poller.</exception>
    /// <exception cref="ObjectDisposedException">The poller is disposed.</exception>
    public int Wait(Span<PollEvent> events, TimeSpan timeout)
    {
        if (events.IsEmpty)
            throw new ArgumentException("The event span is empty: a wait needs room for at least one event.", nameof(events));
        if (timeout < TimeSpan.Zero && timeout != Timeout.InfiniteTimeSpan)
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "A wait timeout must be zero or positive, or Timeout.InfiniteTimeSpan.");

        int previous = Interlocked.CompareExchange(ref _state, Waiting, Idle);
        if (previous == Waiting)
            throw new InvalidOperationException("Another thread is already waiting on this poller; only one thread may wait at a time.");
        if (previous != Idle)
            throw new ObjectDisposedException(nameof(Poller));
        try
        {
            return _backend.Wait(events, timeout);
        }
        finally
        {
            if (Interlocked.CompareExchange(ref _state, Idle, Waiting) != Waiting)
            {
                // Disposed while we waited: the disposing thread left the teardown to us, because the
                // backend's descriptors must outlive the kernel wait that uses them.
                Volatile.Write(ref _state, Disposed);
                Teardown();
            }
        }
    }

    /// <summary>
    /// How long a blocking <see cref="Wait(Span{PollEvent}, TimeSpan)"/> keeps polling with zero-timeout kernel waits
    /// before it sleeps in the kernel, after a wait that found events (zero, the default: it sleeps at once). Waking a
    /// sleeping thread takes tens of microseconds on a virtual CPU; a server answering one request at a time waits
    /// about that long for the next, and a short spin catches it awake, as the .NET thread pool's workers and Linux
    /// busy polling do. The budget is an upper bound: each spin that finds nothing halves the next one, a hit
    /// restores it, and a wait that timed out (an idle loop) does not spin at all. The environment variable
    /// <c>IOMUX_SPIN_US</c> (microseconds) sets the initial value. <see cref="BackendCounters.Spins"/> and
    /// <see cref="BackendCounters.SpinHits"/> tell how it pays.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Negative, or longer than one second.</exception>
    public TimeSpan SpinBeforeSleep
    {
        get => _spin;
        set
        {
            if (value < TimeSpan.Zero || value > TimeSpan.FromSeconds(1))
                throw new ArgumentOutOfRangeException(nameof(value), value, "A spin budget is between zero (off) and one second.");
            _spin = value;
            _backend.SpinTicks = (long)(value.Ticks * (System.Diagnostics.Stopwatch.Frequency / (double)TimeSpan.TicksPerSecond));
        }
    }

    private TimeSpan _spin;

    /// <summary>The budget IoMux's own servers (HTTP, echo, the proxy, the Kestrel transport) spin with: about one
    /// loopback round trip plus a wake-up here, so a client sending its next request at once finds the loop awake
    /// (docs/BENCHMARKS.md, "Latency at one connection").</summary>
    internal static readonly TimeSpan ServerSpin = TimeSpan.FromMicroseconds(50);

    /// <summary>Sets <see cref="SpinBeforeSleep"/> to the budget IoMux's own servers (HTTP, echo, the proxy, the Kestrel
    /// transport) use on their loops' pollers, 50 µs: about one loopback round trip plus a wake-up, so a client that
    /// sends its next request at once finds the loop awake (docs/BENCHMARKS.md, "Latency at one connection"). Does
    /// nothing when <c>IOMUX_SPIN_US</c> is set: the operator's value, applied when the poller was made, stays.</summary>
    public void UseServerSpin()
    {
        if (SpinFromEnvironment() is null)
            SpinBeforeSleep = ServerSpin;
    }

    /// <summary>The spin budget <c>IOMUX_SPIN_US</c> asks for (read once per process), or null when it is unset or
    /// not a number of microseconds from 0 to 1 000 000.</summary>
    internal static TimeSpan? SpinFromEnvironment() => s_spinFromEnvironment;

    private static readonly TimeSpan? s_spinFromEnvironment =
        int.TryParse(Environment.GetEnvironmentVariable("IOMUX_SPIN_US"), System.Globalization.NumberStyles.None,
            System.Globalization.CultureInfo.InvariantCulture, out int us) && us <= 1_000_000
            ? TimeSpan.FromMicroseconds(us) : null;

    /// <summary>Makes the current or next <see cref="Wait(Span{PollEvent}, TimeSpan)"/> return. Any thread;
    /// coalesced; a no-op once the poller is disposed (wakers may race with shutdown).</summary>
    public void Wake()
    {
        if (Volatile.Read(ref _state) < Disposed)
            _backend.Wake();
    }

    /// <summary>Releases every registration and the backend. A thread blocked in a wait returns 0 promptly.</summary>
    public void Dispose()
    {
        while (true)
        {
            int state = Volatile.Read(ref _state);
            if (state == Idle && Interlocked.CompareExchange(ref _state, Disposed, Idle) == Idle)
            {
                Teardown();
                return;
            }
            if (state == Waiting && Interlocked.CompareExchange(ref _state, DisposedWhileWaiting, Waiting) == Waiting)
            {
                _backend.Wake();
                return;
            }
            if (state >= Disposed)
                return;
        }
    }

    /// <summary>Disposing the backend retires every registration and closes the kernel object, which drops every
    /// remaining kernel registration.</summary>
    private void Teardown() => _backend.Dispose();

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_state >= Disposed, this);

    private static void ValidateMode(TriggerMode mode)
    {
        if (mode is not (TriggerMode.Level or TriggerMode.Edge or TriggerMode.Oneshot))
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "Unknown trigger mode.");
    }
}
