using System.Diagnostics;

namespace IoMux;

/// <summary>The deadline of one <see cref="PollerBackend.Wait"/> call, so that a wait resumed after EINTR or a
/// spurious wake uses the time left rather than starting over.</summary>
internal readonly struct WaitDeadline
{
    /// <summary>Kernel waits are cut into slices no longer than this: some kernels mishandle very long
    /// epoll timeouts (libevent's MAX_EPOLL_TIMEOUT_MSEC is 35 minutes), and select's timeval and a
    /// millisecond int both overflow eventually. A slice that ends early just loops.</summary>
    public static readonly TimeSpan MaxSlice = TimeSpan.FromMinutes(30);

    private readonly long _endTimestamp; // Stopwatch ticks; long.MaxValue for infinite, 0 for "poll only"

    private WaitDeadline(long end) => _endTimestamp = end;

    /// <summary>Starts a deadline <paramref name="timeout"/> from now (<see cref="Timeout.InfiniteTimeSpan"/>: never).
    /// The zero timeout — the busiest case, a loop polling between work items — is inlined into the caller and reads
    /// no clock at all.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static WaitDeadline Start(TimeSpan timeout) => timeout == TimeSpan.Zero ? default : StartTimed(timeout);

    private static WaitDeadline StartTimed(TimeSpan timeout)
    {
        if (timeout == Timeout.InfiniteTimeSpan)
            return new WaitDeadline(long.MaxValue);
        if (timeout < TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "A wait timeout must be zero or positive, or Timeout.InfiniteTimeSpan.");
        long ticks = (long)(timeout.Ticks * (Stopwatch.Frequency / (double)TimeSpan.TicksPerSecond));
        long now = Stopwatch.GetTimestamp();
        return new WaitDeadline(ticks >= long.MaxValue - now ? long.MaxValue : now + ticks);
    }

    /// <summary>True for a wait without a deadline.</summary>
    public bool IsInfinite => _endTimestamp == long.MaxValue;

    /// <summary>True for a zero timeout: look, never block.</summary>
    public bool IsZero => _endTimestamp == 0;

    /// <summary>The time left, zero once passed, capped at <see cref="MaxSlice"/>; infinite waits give
    /// <see cref="Timeout.InfiniteTimeSpan"/>.</summary>
    public TimeSpan NextSlice()
    {
        if (IsInfinite)
            return Timeout.InfiniteTimeSpan;
        if (IsZero)
            return TimeSpan.Zero;
        long left = _endTimestamp - Stopwatch.GetTimestamp();
        if (left <= 0)
            return TimeSpan.Zero;
        var span = TimeSpan.FromTicks((long)(left * ((double)TimeSpan.TicksPerSecond / Stopwatch.Frequency)) + 1);
        return span > MaxSlice ? MaxSlice : span;
    }

    /// <summary>True once the deadline has passed.</summary>
    public bool HasPassed => IsZero || (!IsInfinite && Stopwatch.GetTimestamp() >= _endTimestamp);

    /// <summary>Milliseconds for epoll_wait/poll: rounded up so that a sub-millisecond timeout does not
    /// become a zero timeout and spin (mio#1615, bun#34780); -1 for infinite.</summary>
    public static int ToMillisecondsRoundedUp(TimeSpan slice)
    {
        if (slice == Timeout.InfiniteTimeSpan)
            return -1;
        long ms = (slice.Ticks + TimeSpan.TicksPerMillisecond - 1) / TimeSpan.TicksPerMillisecond;
        return (int)Math.Min(ms, int.MaxValue);
    }
}
