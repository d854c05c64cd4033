using System.Diagnostics;

namespace IoMux.Loop;

/// <summary>The clock a timer counts on.</summary>
public enum LoopClock
{
    /// <summary>Monotonic: never jumps (Stopwatch).</summary>
    Monotonic,
    /// <summary>Wall clock (UTC); a deadline is a point in calendar time.</summary>
    Realtime,
    /// <summary>Like monotonic, but it keeps counting while the system is suspended (Linux CLOCK_BOOTTIME).
    /// Only where the OS has it: timers on it throw <see cref="PlatformNotSupportedException"/> elsewhere.</summary>
    Boottime,
}

/// <summary>
/// A timer that is a full <see cref="EventSource"/>: due at <see cref="Deadline"/>, allowed to run as late as
/// deadline + <see cref="Accuracy"/>, so that timers whose windows overlap are served by one wakeup (sd-event's
/// coalescing). Being a source, it has a description, a settable priority and state, a rate limit, and is
/// named by <see cref="EventLoopException.FailedSource"/>. While armed it holds one record in the loop's timer
/// table (see <see cref="SlimTimer"/>, the same timer without the source object around it); no kernel timer
/// exists per timer.
/// </summary>
public sealed class TimerSource : EventSource
{
    /// <summary>The accuracy used when none is given. 1 ms: small enough for a server's protocol timeouts to
    /// mean what they say, large enough to fold timers set in the same millisecond into one wakeup. (sd-event
    /// defaults to 250 ms, which suits a system manager's housekeeping rather than request deadlines.)</summary>
    public static readonly TimeSpan DefaultAccuracy = TimeSpan.FromMilliseconds(1);

    private readonly Action<TimerSource> _callback;
    private int _slot = -1; // its record in the loop's timer table while armed

    internal TimerSource(EventLoop loop, LoopClock clock, long deadline, long accuracy, long period, Action<TimerSource> callback, int priority, SourceState state, string? description)
        : base(loop, priority, state, description)
    {
        _clock = (byte)clock;
        DeadlineNanoseconds = deadline;
        AccuracyNanoseconds = accuracy;
        PeriodNanoseconds = period;
        _callback = callback;
        if (state != SourceState.Off)
            Arm();
    }

    private readonly byte _clock; // a LoopClock, as a byte: it packs with the source's state and flag

    /// <summary>The clock.</summary>
    public LoopClock Clock => (LoopClock)_clock;
    internal long DeadlineNanoseconds { get; private set; }
    internal long AccuracyNanoseconds { get; private set; }
    internal long PeriodNanoseconds { get; }
    internal long LatestNanoseconds => DeadlineNanoseconds + AccuracyNanoseconds;

    /// <summary>When the timer is due, a time on its clock (see <see cref="EventLoop.Now"/>).</summary>
    public TimeSpan Deadline => TimerSpan.ToTimeSpan(DeadlineNanoseconds);

    /// <summary>How late it may run.</summary>
    public TimeSpan Accuracy => TimeSpan.FromTicks(AccuracyNanoseconds / 100);

    /// <summary>Moves the deadline (absolute, on the timer's clock) and switches a finished oneshot back on.</summary>
    public void SetDeadline(TimeSpan deadline, TimeSpan? accuracy = null) => SetDeadlineNanoseconds(TimerSpan.Nanoseconds(deadline), accuracy);

    private void SetDeadlineNanoseconds(long deadlineNanoseconds, TimeSpan? accuracy = null)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        Disarm();
        DeadlineNanoseconds = TimerSpan.Deadline(deadlineNanoseconds);
        if (accuracy is { } a)
            AccuracyNanoseconds = TimerSpan.Nanoseconds(a);
        if (State == SourceState.Off)
            State = SourceState.Oneshot; // arms it
        else
            Arm();
    }

    private void Arm()
    {
        if (_slot < 0)
            _slot = Loop.TimerTable.Add(Clock, DeadlineNanoseconds, LatestNanoseconds, 0, this, 0);
    }

    private void Disarm()
    {
        if (_slot < 0)
            return;
        Loop.TimerTable.Free(_slot);
        _slot = -1;
    }

    /// <summary>The loop took it out of the table as due: its record is freed, the source stays.</summary>
    internal void OnDue() => Disarm();

    /// <summary>Due <paramref name="delay"/> from the loop's cached now.</summary>
    public void SetDelay(TimeSpan delay) => SetDeadlineNanoseconds(TimerSpan.After(Loop.NowNanoseconds(Clock), delay));

    /// <summary>Puts a due timer back with its deadline moved to <paramref name="until"/> (rate limit).</summary>
    internal void PostponeTo(long until)
    {
        DeadlineNanoseconds = Math.Max(DeadlineNanoseconds, until);
        Arm();
    }

    private protected override void OnStateChanged(SourceState previous, SourceState current)
    {
        if (current == SourceState.Off)
            Disarm();
        else if (previous == SourceState.Off)
            Arm();
    }

    internal override void Dispatch()
    {
        if (PeriodNanoseconds > 0 && State == SourceState.On)
        {
            DeadlineNanoseconds = TimerTable.NextPeriodicDeadline(DeadlineNanoseconds, PeriodNanoseconds, Loop.NowNanoseconds(Clock));
            Arm();
        }
        else if (State == SourceState.Oneshot)
        {
            State = SourceState.Off; // before the callback, so that the callback may re-arm it
        }
        _callback(this);
    }

    internal override void BeforeDispatch()
    {
        // Handled in Dispatch, which also re-arms a periodic timer before its callback.
    }

    /// <summary>Armed in the table: pending and armed again means an earlier callback of this iteration moved it.</summary>
    internal bool IsArmed => _slot >= 0;

    private protected override void OnDispose() => Disarm();

    internal static long ReadClock(LoopClock clock) => clock switch
    {
        LoopClock.Monotonic => (long)(Stopwatch.GetTimestamp() * (1_000_000_000.0 / Stopwatch.Frequency)),
        LoopClock.Realtime => (DateTime.UtcNow.Ticks - DateTime.UnixEpoch.Ticks) * 100,
        _ => BootClock.Read(),
    };
}

/// <summary>CLOCK_BOOTTIME (Linux 2.6.39+, clock id 7).</summary>
internal static unsafe partial class BootClock
{
    [System.Runtime.InteropServices.LibraryImport("libc", SetLastError = true)]
    private static partial int clock_gettime(int clock, long* timespec);

    public static bool IsAvailable => OperatingSystem.IsLinux();

    public static long Read()
    {
        if (!IsAvailable)
            return 0;
        long* ts = stackalloc long[2];
        return clock_gettime(7, ts) == 0 ? ts[0] * 1_000_000_000 + ts[1] : 0;
    }
}

/// <summary>Timer arithmetic that cannot overflow: a span longer than <see cref="Never"/> (about 73 years) means
/// "never", so a deadline plus its accuracy or period still fits a long (TimeSpan.MaxValue in nanoseconds does not,
/// and wrapped round to a deadline in the past: the timer fired at once).</summary>
internal static class TimerSpan
{
    /// <summary>Nanoseconds past which a deadline, an accuracy or a period is "never".</summary>
    public const long Never = long.MaxValue / 4;

    /// <summary><paramref name="span"/> in nanoseconds, saturated at ±<see cref="Never"/>.</summary>
    public static long Nanoseconds(TimeSpan span) =>
        span.Ticks >= Never / 100 ? Never : span.Ticks <= -Never / 100 ? -Never : span.Ticks * 100;

    /// <summary>A deadline, saturated at <see cref="Never"/>.</summary>
    public static long Deadline(long nanoseconds) => Math.Min(nanoseconds, Never);

    /// <summary>The deadline <paramref name="delay"/> after <paramref name="now"/>.</summary>
    public static long After(long now, TimeSpan delay) => Deadline(now + Nanoseconds(delay));

    /// <summary>Nanoseconds as a <see cref="TimeSpan"/> (100 ns ticks, rounded towards zero).</summary>
    public static TimeSpan ToTimeSpan(long nanoseconds) => TimeSpan.FromTicks(nanoseconds / 100);
}
