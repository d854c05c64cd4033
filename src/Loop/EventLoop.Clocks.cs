namespace IoMux.Loop;

// Realtime and boottime timers on absolute kernel timers (see LoopClocks): one per clock, made when the first timer
// on that clock is added, registered with the poller under a token no source has, and set to the clock's earliest
// "latest" moment before each wait, only when that moment changed (no system call in a steady state).
public sealed partial class EventLoop
{
    /// <summary>Tokens from here on are the clock timers' (source ids count up from 1; the poller's own wake uses
    /// <see cref="ulong.MaxValue"/>).</summary>
    private const ulong ClockTokenBase = ulong.MaxValue - 16;
    private const long Unknown = long.MinValue; // what the kernel timer is set to is not known: set it anew

    private readonly AbsoluteClockTimer?[] _clockTimers = new AbsoluteClockTimer?[3];
    private readonly Registration?[] _clockRegistrations = new Registration?[3];
    private readonly bool[] _clockTimerTried = new bool[3];
    private readonly long[] _clockArmedAt = [long.MaxValue, long.MaxValue, long.MaxValue];

    /// <summary>True when timers on <paramref name="clock"/> wait on an absolute kernel timer rather than on a
    /// relative timeout of the poller's wait.</summary>
    internal bool HasKernelTimer(LoopClock clock) => _clockTimers[(int)clock] is not null;

    /// <summary>The poller's timeout the next iteration would use (tests: a realtime timer does not set it).</summary>
    internal TimeSpan NextTimeout(TimeSpan maxTimeout) => ComputeTimeout(maxTimeout);

    private void SetUpClockTimer(LoopClock clock)
    {
        _clockTimerTried[(int)clock] = true;
        var timer = clock == LoopClock.Monotonic ? _clocks.CreateMonotonicTimer() : _clocks.CreateTimer(clock);
        if (timer is null)
            return; // no absolute timer here: this clock's timers fall back to a relative wait
        try
        {
            _clockRegistrations[(int)clock] = Poller.Register(timer.Descriptor, ClockTokenBase + (ulong)clock, Interest.Readable);
        }
        catch
        {
            timer.Dispose();
            throw;
        }
        _clockTimers[(int)clock] = timer;
    }

    private void ArmClockTimer(LoopClock clock, AbsoluteClockTimer timer, long latest)
    {
        if (_clockArmedAt[(int)clock] == latest)
            return;
        timer.Arm(latest);
        _clockArmedAt[(int)clock] = latest;
    }

    /// <summary>The kernel timer of clock <paramref name="index"/> expired (or, realtime, the wall clock was set):
    /// consume it; the due timers are then found by the iteration's fresh now, and the next wait sets it anew.</summary>
    private void ClockTimerExpired(int index)
    {
        if (index == (int)(EmbedWakeToken - ClockTokenBase))
        {
            EmbedWakeRead();
            return;
        }
        if ((uint)index >= (uint)_clockTimers.Length || _clockTimers[index] is not { } timer)
            return;
        timer.Acknowledge();
        _clockArmedAt[index] = Unknown;
    }

    private void DisposeClockTimers()
    {
        DisposeEmbedWake();
        for (int i = 0; i < _clockTimers.Length; i++)
        {
            _clockRegistrations[i]?.Dispose();
            _clockRegistrations[i] = null;
            _clockTimers[i]?.Dispose();
            _clockTimers[i] = null;
        }
    }
}
