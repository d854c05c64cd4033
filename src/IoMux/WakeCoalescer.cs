namespace IoMux;

/// <summary>
/// Coalesces wakes so that a waiter pays at most one kernel write per sleep, whatever the number of
/// <see cref="PollerBackend.Wake"/> calls (the pattern of Netty's nextWakeupNanos and libuv's async
/// pending flag). The waiter announces it is about to sleep; a waker writes to the kernel channel only when
/// it is the first to request a wake while the waiter sleeps. A request made while the waiter is awake
/// costs no system call: the waiter sees the flag before it blocks.
/// </summary>
internal sealed class WakeCoalescer
{
    private int _requested;
    private int _sleeping;

    /// <summary>Waker side. Returns true when the caller must write to the wake channel.</summary>
    public bool Request()
    {
        // Both sides use a full fence (Interlocked) before reading the other's flag (Dekker): either the
        // waker sees the waiter sleeping, or the waiter sees the request before it blocks.
        return Interlocked.Exchange(ref _requested, 1) == 0 && Volatile.Read(ref _sleeping) == 1;
    }

    /// <summary>Waiter side, right before the kernel wait. Returns false when a wake is already pending,
    /// in which case the wait must not block (poll with a zero timeout).</summary>
    public bool PrepareToSleep()
    {
        Interlocked.Exchange(ref _sleeping, 1);
        return Volatile.Read(ref _requested) == 0;
    }

    /// <summary>Waiter side, right after the kernel wait. Returns true when a wake was requested (and is
    /// now consumed). A channel write that raced with this call may still be pending in the kernel; the
    /// backend treats such a wake-channel event with no request as spurious and keeps waiting.</summary>
    public bool FinishSleep()
    {
        Volatile.Write(ref _sleeping, 0);
        return Interlocked.Exchange(ref _requested, 0) == 1;
    }

    /// <summary>Waiter side, before the kernel wait: the timeout slice to pass to the kernel (zero when a wake is
    /// pending). A zero-timeout wait never sleeps, so it skips the announcement and its atomic operation.</summary>
    public TimeSpan BeginWait(in WaitDeadline deadline)
    {
        if (deadline.IsZero)
            return TimeSpan.Zero;
        return PrepareToSleep() ? deadline.NextSlice() : TimeSpan.Zero;
    }

    /// <summary>Waiter side, after the kernel wait: true when a wake was requested (and is now consumed).</summary>
    public bool EndWait(in WaitDeadline deadline) => deadline.IsZero ? TryConsume() : FinishSleep();

    /// <summary>Waiter side, for a wait that does not block (zero timeout): consumes a pending request.
    /// Costs no atomic operation when none is pending.</summary>
    public bool TryConsume() => Volatile.Read(ref _requested) == 1 && Interlocked.Exchange(ref _requested, 0) == 1;

    /// <summary>True when a wake has been requested and not yet consumed.</summary>
    public bool IsRequested => Volatile.Read(ref _requested) == 1;
}
