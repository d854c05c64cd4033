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
/// named by <see cref="EventLoopException.FailedSource"/>. While armed, the loop's timer table holds the source
/// itself in a heap (one reference; see <see cref="SlimTimer"/>, the same timer as a record and no object); no
/// kernel timer exists per timer.
/// </summary>
/// <remarks>Its object holds only what every timer needs (the loop, the callback, the deadline, its heap position,
/// its clock and accuracy group, the state, and the side object's reference): 56 bytes, 64 with its heap entry.
/// The accuracy is its group's; the description, a priority other than 0, the period and an accuracy that has no
/// group of its own (past 16 accuracies on one clock) live in a side object, made when one is set.</remarks>
public sealed class TimerSource : EventSource
{
    /// <summary>The accuracy used when none is given. 1 ms: small enough for a server's protocol timeouts to
    /// mean what they say, large enough to fold timers set in the same millisecond into one wakeup. (sd-event
    /// defaults to 250 ms, which suits a system manager's housekeeping rather than request deadlines.)</summary>
    public static readonly TimeSpan DefaultAccuracy = TimeSpan.FromMilliseconds(1);

    private readonly Action<TimerSource> _callback;
    /// <summary>When it is due (nanoseconds on its clock); the key of its heap while armed.</summary>
    internal long DeadlineNanoseconds;
    /// <summary>Its place in its group's heap while armed, -1 otherwise; kept by the timer table.</summary>
    internal int HeapIndex = -1;
    private readonly byte _clock; // a LoopClock, as a byte: it packs with the group and the source's state and flag
    /// <summary>Its accuracy group on its clock in the timer table, whose accuracy is the timer's unless the side
    /// object holds another (the clock had no group left for it).</summary>
    internal byte Group;

    internal TimerSource(EventLoop loop, LoopClock clock, long deadline, long accuracy, long period, Action<TimerSource> callback, int priority, SourceState state, string? description)
        : base(loop, priority, state, description)
    {
        _clock = (byte)clock;
        DeadlineNanoseconds = deadline;
        SetAccuracy(accuracy);
        if (period != 0)
            TimerMore.Period = period;
        _callback = callback;
        if (state != SourceState.Off)
            Arm();
    }

    /// <summary>A timer's side object: what every source keeps there, and what only some timers set.</summary>
    private sealed class TimerExtras : Extras
    {
        /// <summary>Not an accuracy: <see cref="Accuracy"/> holds none (the timer's group has its accuracy).</summary>
        public const long NoAccuracy = long.MinValue;

        public string? Description; // the priority is TimerPriority, in the base: see there
        public long Period, Accuracy = NoAccuracy;
    }

    private protected override Extras MakeExtras() => new TimerExtras();

    /// <summary>The side object, or null; a timer's is always a <see cref="TimerExtras"/>.</summary>
    private TimerExtras? TimerSide => (TimerExtras?)Side;

    /// <summary>The side object, made on first use.</summary>
    private TimerExtras TimerMore => (TimerExtras)More;

    private protected override int PriorityValue
    {
        get => Side?.TimerPriority ?? 0;
        set
        {
            if (value != 0 || Side is not null)
                More.TimerPriority = value;
        }
    }

    private protected override string? DescriptionValue
    {
        get => TimerSide?.Description;
        set
        {
            if (value is not null || Side is not null)
                TimerMore.Description = value;
        }
    }

    private protected override long IdValue
    {
        get => 0;
        set { } // no room, and no use: the timer table holds a timer, not the loop's sources
    }

    internal override SourceVisit Visit => SourceVisit.Elsewhere;

    /// <summary>The clock.</summary>
    public LoopClock Clock => (LoopClock)_clock;

    internal long AccuracyNanoseconds => TimerSide is { Accuracy: not TimerExtras.NoAccuracy } side
        ? side.Accuracy
        : Loop.TimerTable.GroupAccuracy(Clock, Group);

    internal long PeriodNanoseconds => TimerSide?.Period ?? 0;

    /// <summary>The group of <paramref name="accuracy"/>, and the accuracy itself in the side object when the group's
    /// is another. Only while disarmed: the group is the heap the timer sits in.</summary>
    private void SetAccuracy(long accuracy)
    {
        Group = Loop.TimerTable.GroupOf(Clock, accuracy);
        if (Loop.TimerTable.GroupAccuracy(Clock, Group) != accuracy)
            TimerMore.Accuracy = accuracy;
        else if (TimerSide is { } side)
            side.Accuracy = TimerExtras.NoAccuracy;
    }

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
            SetAccuracy(TimerSpan.Nanoseconds(a));
        if (State == SourceState.Off)
            State = SourceState.Oneshot; // arms it
        else
            Arm();
    }

    private void Arm()
    {
        if (HeapIndex < 0)
            Loop.TimerTable.Arm(this);
    }

    private void Disarm()
    {
        if (HeapIndex >= 0)
            Loop.TimerTable.Disarm(this);
    }

    /// <summary>The loop took it out of the table as due: out of its heap, the source stays.</summary>
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
        long period = PeriodNanoseconds;
        if (period > 0 && State == SourceState.On)
        {
            DeadlineNanoseconds = TimerTable.NextPeriodicDeadline(DeadlineNanoseconds, period, Loop.NowNanoseconds(Clock));
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
    internal bool IsArmed => HeapIndex >= 0;

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
