using System.Runtime.InteropServices;
using IoMux.Interop;

namespace IoMux.Loop;

// The loop in another loop: a descriptor to poll and the iteration in three steps (sd_event_get_fd,
// sd_event_prepare, sd_event_wait, sd_event_dispatch).
public sealed unsafe partial class EventLoop
{
    private enum Phase : byte { Initial, Prepared, Waited }

    private const ulong EmbedWakeToken = ClockTokenBase + 3;

    [LibraryImport("libc", SetLastError = true)] private static partial int eventfd(uint initial, int flags);

    private Phase _phase;
    private TimeSpan _preparedTimeout;
    // Embedded: an eventfd in this loop's poller that Post, Exit and signals write, so that the outer loop sees them. The
    // poller's own wake cannot serve: it writes to the kernel only while a thread sleeps in this poller's wait, and an
    // embedded loop's thread sleeps in the outer one's.
    private int _embedWake = -1;
    private Registration? _embedWakeRegistration;

    /// <summary>Wakes the loop from any thread: the poller's wait and, embedded, the outer loop.</summary>
    internal void WakeUp()
    {
        Poller.Wake();
        if (Volatile.Read(ref _embedWake) is >= 0 and var fd)
        {
            ulong one = 1;
            LibC.write(fd, (byte*)&one, 8); // EAGAIN only when the counter is near overflow: awake anyway
        }
    }

    private void EmbedWakeRead()
    {
        ulong count;
        LibC.read(_embedWake, (byte*)&count, 8);
    }

    private void SetUpEmbedWake()
    {
        int fd = eventfd(0, LibC.O_NONBLOCK_LINUX | LibC.O_CLOEXEC_LINUX) /* EFD_NONBLOCK | EFD_CLOEXEC */;
        if (fd < 0)
            throw new PosixException("eventfd", Errno.Last);
        _embedWakeRegistration = Poller.Register(fd, EmbedWakeToken, Interest.Readable);
        Volatile.Write(ref _embedWake, fd);
    }

    private void DisposeEmbedWake()
    {
        _embedWakeRegistration?.Dispose();
        _embedWakeRegistration = null;
        int fd = Interlocked.Exchange(ref _embedWake, -1);
        LibC.CloseQuietly(fd);
    }

    /// <summary>A descriptor that is readable while this loop has something to do, for embedding it in another loop
    /// (sd_event_get_fd): the epoll instance underneath, with this loop's monotonic timers moved onto a timerfd in it
    /// from the first call on, so that they wake it too (posted actions and <see cref="Exit"/> do, through the poller's
    /// wake). Drive the loop from the outer one with <see cref="Prepare"/>, <see cref="Wait"/> and
    /// <see cref="Dispatch"/>: before the outer wait, <see cref="Prepare"/>; when it says work is pending already, the
    /// outer wait must not sleep; after it (the descriptor readable, or anyway), <see cref="Wait"/> with a zero
    /// timeout and, when that found work, <see cref="Dispatch"/>. The descriptor belongs to the poller: do not close it.</summary>
    /// <exception cref="NotSupportedException">The backend has no such descriptor (only epoll has: poll and select have
    /// no kernel object; kqueue and event ports are not wired up).</exception>
    public int Descriptor
    {
        get
        {
            ThrowIfDisposed();
            int fd = Poller.Descriptor;
            if (fd < 0)
                throw new NotSupportedException($"The {Poller.Capabilities.Name} backend has no descriptor another loop could poll; epoll has.");
            if (!_clockTimerTried[(int)LoopClock.Monotonic])
                SetUpClockTimer(LoopClock.Monotonic);
            if (_embedWake < 0)
                SetUpEmbedWake();
            return fd;
        }
    }

    /// <summary>The first step of an iteration (sd_event_prepare): the prepare callbacks, the exit-on-idle check, the
    /// timers set for the coming wait. True when work is pending already (a defer, a posted action, a signal, an exit:
    /// the wait will not block, so an outer loop must not sleep). May be called again before <see cref="Wait"/> (an
    /// outer loop that did not wake for this one prepares again).</summary>
    /// <exception cref="InvalidOperationException">Called from one of the loop's callbacks, or on another thread while
    /// one runs the loop, or between <see cref="Wait"/> and <see cref="Dispatch"/>.</exception>
    public bool Prepare()
    {
        if (_phase == Phase.Waited)
            throw new InvalidOperationException("Wait found work: Dispatch it before preparing again.");
        var previousContext = Enter();
        try
        {
            RunPrepareCallbacks();
            if (ExitOnIdle && !_exitRequested && IsIdle())
            {
                _exitCode = 0;
                _exitRequested = true;
            }
            _preparedTimeout = ComputeTimeout(Timeout.InfiniteTimeSpan);
            _phase = Phase.Prepared;
            return _preparedTimeout == TimeSpan.Zero;
        }
        finally
        {
            Leave(previousContext);
        }
    }

    /// <summary>The second step (sd_event_wait): waits at most <paramref name="timeout"/> (and no longer than the
    /// timers allow), then collects what is pending. True when there is work: call <see cref="Dispatch"/>; false when
    /// there is none, and the iteration is over (the next step is <see cref="Prepare"/>).</summary>
    /// <exception cref="InvalidOperationException"><see cref="Prepare"/> was not called first, or called from a callback.</exception>
    public bool Wait(TimeSpan timeout)
    {
        if (_phase != Phase.Prepared)
            throw new InvalidOperationException("Prepare comes first.");
        var previousContext = Enter();
        _phase = Phase.Initial; // also when the wait throws: the next step is Prepare
        try
        {
            var wait = _preparedTimeout;
            if (timeout != Timeout.InfiniteTimeSpan && (wait == Timeout.InfiniteTimeSpan || timeout < wait))
                wait = timeout;
            int n = Poller.Wait(_events, wait);
            UpdateNow();
            ExpireRateLimits();
            CollectPending(n);
            if (_pendingCount == 0 && !_exitRequested)
                return false;
            _phase = Phase.Waited;
            return true;
        }
        finally
        {
            Leave(previousContext);
        }
    }

    /// <summary>The last step (sd_event_dispatch): runs what <see cref="Wait"/> collected, as an iteration of
    /// <see cref="Run"/> does. Returns false once the loop has exited (its exit sources then ran), as
    /// <see cref="RunOnce"/> does.</summary>
    /// <exception cref="InvalidOperationException"><see cref="Wait"/> found no work or was not called, or called from a callback.</exception>
    public bool Dispatch()
    {
        if (_phase != Phase.Waited)
            throw new InvalidOperationException("Dispatch follows a Wait that found work.");
        var previousContext = Enter();
        _phase = Phase.Initial;
        try
        {
            DispatchPending();
            MeasureLag();
            Iterations++;
        }
        finally
        {
            Leave(previousContext);
        }
        if (!_exitRequested)
            return true;
        RunExitSources();
        return false;
    }
}
