namespace IoMux;

/// <summary>
/// The small interface every backend implements: one kernel mechanism, no policy. The contract
/// (docs/SEMANTICS.md) is what <see cref="Poller"/> plus a backend must show; each member below says what
/// the backend itself owes.
/// </summary>
/// <remarks>
/// Why three registration calls (add, modify, delete) and not one "set" call, as the nginx talk asks of
/// epoll_ctl: each call states an intent whose violation is a bug worth a typed error. A double add
/// (<see cref="AlreadyRegisteredException"/>) usually means two owners think they own one descriptor; a
/// modify of an unknown descriptor (<see cref="NotRegisteredException"/>) means a registration was lost.
/// A single upsert call would silently paper over both. Modify also has a meaning of its own: it re-arms a
/// oneshot registration. kqueue's single kevent() call and ports' associate/dissociate map onto the same
/// three intents.
/// <para>Thread safety: <see cref="Add"/>, <see cref="Modify"/>, <see cref="Delete"/>, <see cref="Rearm"/>
/// and <see cref="Wake"/> may be called from any thread, also while another thread is inside
/// <see cref="Wait"/>; a change made during a wait takes effect by the next wait at the latest. Only one
/// thread waits at a time (the <see cref="Poller"/> enforces it).</para>
/// </remarks>
public interface IPollerBackend : IDisposable
{
    /// <summary>What the backend does natively and what it emulates.</summary>
    BackendCapabilities Capabilities { get; }

    /// <summary>Counters for tests and diagnostics (kernel waits made, interruptions, wake writes).</summary>
    BackendCounters Counters { get; }

    /// <summary>Starts watching <paramref name="fd"/>; <paramref name="token"/> comes back in its events.</summary>
    /// <exception cref="AlreadyRegisteredException">The descriptor is already registered here.</exception>
    /// <exception cref="UnsupportedDescriptorException">A regular file or directory (always ready; never waitable).</exception>
    /// <exception cref="DescriptorOutOfRangeException">The descriptor is above <see cref="BackendCapabilities.MaxDescriptor"/>.</exception>
    /// <exception cref="PosixException">The kernel refused it, e.g. EBADF for a closed descriptor.</exception>
    void Add(int fd, ulong token, Interest interest, TriggerMode mode);

    /// <summary>Changes interest, mode or token; re-arms a oneshot registration and every edge direction.</summary>
    /// <exception cref="NotRegisteredException">The descriptor is not registered here.</exception>
    void Modify(int fd, ulong token, Interest interest, TriggerMode mode);

    /// <summary>Stops watching <paramref name="fd"/>. Must be called before the descriptor is released; if
    /// it was closed already, the kernel's complaint (EBADF, ENOENT) is swallowed.</summary>
    /// <exception cref="NotRegisteredException">The descriptor is not registered here.</exception>
    void Delete(int fd);

    /// <summary>Stops watching <paramref name="fd"/>, which the caller closes right after and never duplicated. A
    /// backend whose kernel drops a descriptor's registration when the descriptor is closed may skip its system
    /// call (epoll: one epoll_ctl less per connection); the default is <see cref="Delete"/>.</summary>
    /// <exception cref="NotRegisteredException">The descriptor is not registered here.</exception>
    void Forget(int fd) => Delete(fd);

    /// <summary>Tells the backend the consumer hit would-block in <paramref name="directions"/>, so an emulated
    /// edge registration is armed again for them. A no-op for level, oneshot and native edge modes.</summary>
    void Rearm(int fd, Interest directions);

    /// <summary>Blocks until at least one registration is ready, <paramref name="timeout"/> passes, or
    /// <see cref="Wake"/> is called; writes at most one event per registration and returns how many.
    /// <see cref="Timeout.InfiniteTimeSpan"/> waits forever. Never returns before the timeout unless events
    /// or a wake arrived: EINTR resumes with the time left.</summary>
    int Wait(Span<PollEvent> events, TimeSpan timeout);

    /// <summary>Makes the current or next <see cref="Wait"/> return. Any thread; sticky until a wait consumes
    /// it; calls made before that wait returns are coalesced into at most one kernel write.</summary>
    void Wake();
}

/// <summary>Monotonic counters a backend keeps for diagnostics and tests. Written by the waiting thread
/// (and by wakers for <see cref="WakeWrites"/>); read them from anywhere, approximately.</summary>
public sealed class BackendCounters
{
    /// <summary>Only IoMux's backends keep counters (an outside backend could never advance them).</summary>
    internal BackendCounters() { }

    internal long _kernelWaits, _interruptions, _wakeWrites, _orphaned, _rebuilds, _spins, _spinHits;
    internal int _lastOrphan = -1;

    /// <summary>Calls into the kernel's wait (epoll_wait, poll, select ...), including re-waits after EINTR.</summary>
    public long KernelWaits => Volatile.Read(ref _kernelWaits);
    /// <summary>Kernel waits that returned EINTR and were resumed.</summary>
    public long Interruptions => Volatile.Read(ref _interruptions);
    /// <summary>Writes to the wake channel (eventfd, pipe ...): at most one per coalesced wake.</summary>
    public long WakeWrites => Volatile.Read(ref _wakeWrites);

    /// <summary>Registrations whose handle was closed while they were registered: the backend stopped watching
    /// them and reported nothing more for them (deregister before closing to avoid this).</summary>
    public long ClosedWhileRegistered => Volatile.Read(ref _orphaned);
    /// <summary>The descriptor number of the last registration counted in <see cref="ClosedWhileRegistered"/>, or -1.</summary>
    public int LastClosedWhileRegistered => Volatile.Read(ref _lastOrphan);
    /// <summary>Times the kernel set was replaced to drop a registration that outlived its descriptor number
    /// (epoll: a descriptor closed before it was deregistered while a dup kept its file open).</summary>
    public long KernelSetRebuilds => Volatile.Read(ref _rebuilds);

    /// <summary>Waits that polled before sleeping (<see cref="Poller.SpinBeforeSleep"/>).</summary>
    public long Spins => Volatile.Read(ref _spins);

    /// <summary>Of <see cref="Spins"/>, those that found events or a wake without sleeping.</summary>
    public long SpinHits => Volatile.Read(ref _spinHits);

    internal void OnKernelWait() => _kernelWaits++;
    internal void OnSpin(bool hit)
    {
        _spins++;
        if (hit)
            _spinHits++;
    }
    internal void OnInterrupted() => _interruptions++;
    internal void OnWakeWrite() => Interlocked.Increment(ref _wakeWrites);
    internal void OnOrphaned(int fd)
    {
        Interlocked.Increment(ref _orphaned);
        Volatile.Write(ref _lastOrphan, fd);
    }
    internal void OnKernelSetRebuilt() => Interlocked.Increment(ref _rebuilds);
}

/// <summary>Implemented by backends that check, on their wait path, whether a registered handle was closed
/// (the poller then does not pin the handle, so <c>Socket.Dispose</c> never waits on a registration).</summary>
/// <summary>A backend built on <see cref="BackendCore"/>: the poller reaches the shared wait loop's settings
/// (spinning before sleep) through it.</summary>
internal interface ICoreBackend
{
    /// <summary>The backend's shared state and wait loop.</summary>
    BackendCore Core { get; }
}

/// <summary>A backend whose kernel object is itself a descriptor that is readable while a wait would find events
/// (an epoll instance), so that a loop on it can be embedded in another loop (sd_event_get_fd).</summary>
internal interface IPollableBackend
{
    /// <summary>The descriptor (owned by the backend).</summary>
    int PollDescriptor { get; }
}

internal interface IOwnedRegistrations
{
    /// <summary>Records the handle that owns the registration of <paramref name="fd"/>.</summary>
    void SetOwner(int fd, System.Runtime.InteropServices.SafeHandle owner);
}
