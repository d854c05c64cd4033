namespace IoMux;

/// <summary>Monotonic counters a backend keeps for diagnostics and tests. Written by the waiting thread
/// (and by wakers for <see cref="WakeWrites"/>); read them from anywhere, approximately.</summary>
public sealed class BackendCounters
{
    /// <summary>Only IoMux's backends keep counters (an outside backend could never advance them).</summary>
    internal BackendCounters() { }

    internal long _kernelWaits, _interruptions, _wakeWrites, _closedWhileRegistered, _rebuilds, _spins, _spinHits;
    internal int _lastClosedWhileRegistered = -1;

    /// <summary>Calls into the kernel's wait (epoll_wait, poll, select ...), including re-waits after EINTR.</summary>
    public long KernelWaits => Volatile.Read(ref _kernelWaits);
    /// <summary>Kernel waits that returned EINTR and were resumed.</summary>
    public long Interruptions => Volatile.Read(ref _interruptions);
    /// <summary>Writes to the wake channel (eventfd, pipe ...): at most one per coalesced wake.</summary>
    public long WakeWrites => Volatile.Read(ref _wakeWrites);

    /// <summary>Registrations whose handle was closed while they were registered: the backend stopped watching
    /// them and reported nothing more for them (deregister before closing to avoid this).</summary>
    public long ClosedWhileRegistered => Volatile.Read(ref _closedWhileRegistered);
    /// <summary>The descriptor number of the last registration counted in <see cref="ClosedWhileRegistered"/>, or -1.</summary>
    public int LastClosedWhileRegistered => Volatile.Read(ref _lastClosedWhileRegistered);
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
    internal void OnClosedWhileRegistered(int fd)
    {
        Interlocked.Increment(ref _closedWhileRegistered);
        Volatile.Write(ref _lastClosedWhileRegistered, fd);
    }
    internal void OnKernelSetRebuilt() => Interlocked.Increment(ref _rebuilds);
}
