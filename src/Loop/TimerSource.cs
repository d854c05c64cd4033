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
/// A timer: due at <see cref="Deadline"/>, allowed to run as late as deadline + <see cref="Accuracy"/>, so
/// that timers whose windows overlap are served by one wakeup (sd-event's coalescing). No kernel timer
/// exists per timer: each clock keeps two binary heaps (earliest deadline, earliest latest moment) and the
/// loop's wait timeout comes from them.
/// </summary>
public sealed class TimerSource : EventSource
{
    /// <summary>The accuracy used when none is given. 1 ms: small enough for a server's protocol timeouts to
    /// mean what they say, large enough to fold timers set in the same millisecond into one wakeup. (sd-event
    /// defaults to 250 ms, which suits a system manager's housekeeping rather than request deadlines.)</summary>
    public static readonly TimeSpan DefaultAccuracy = TimeSpan.FromMilliseconds(1);

    private readonly Action<TimerSource> _callback;
    internal int EarliestIndex = -1, LatestIndex = -1;

    internal TimerSource(EventLoop loop, LoopClock clock, long deadline, long accuracy, long period, Action<TimerSource> callback, int priority, SourceState state, string? description)
        : base(loop, priority, state, description)
    {
        Clock = clock;
        DeadlineNanoseconds = deadline;
        AccuracyNanoseconds = accuracy;
        PeriodNanoseconds = period;
        _callback = callback;
        if (state != SourceState.Off)
            loop.Timers(clock).Add(this);
    }

    /// <summary>The clock.</summary>
    public LoopClock Clock { get; }
    internal long DeadlineNanoseconds { get; private set; }
    internal long AccuracyNanoseconds { get; private set; }
    internal long PeriodNanoseconds { get; }
    internal long LatestNanoseconds => DeadlineNanoseconds + AccuracyNanoseconds;

    /// <summary>When the timer is due, on its clock (nanoseconds; see <see cref="EventLoop.Now"/>).</summary>
    public long Deadline => DeadlineNanoseconds;

    /// <summary>How late it may run.</summary>
    public TimeSpan Accuracy => TimeSpan.FromTicks(AccuracyNanoseconds / 100);

    /// <summary>Moves the deadline (absolute, on the timer's clock) and switches a finished oneshot back on.</summary>
    public void SetDeadline(long deadlineNanoseconds, TimeSpan? accuracy = null)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        var timers = Loop.Timers(Clock);
        timers.Remove(this);
        DeadlineNanoseconds = deadlineNanoseconds;
        if (accuracy is { } a)
            AccuracyNanoseconds = a.Ticks * 100;
        if (State == SourceState.Off)
            State = SourceState.Oneshot; // adds it
        else
            timers.Add(this);
    }

    /// <summary>Due <paramref name="delay"/> from the loop's cached now.</summary>
    public void SetDelay(TimeSpan delay) => SetDeadline(Loop.Now(Clock) + delay.Ticks * 100);

    /// <summary>Puts a due timer back with its deadline moved to <paramref name="until"/> (rate limit).</summary>
    internal void PostponeTo(long until)
    {
        DeadlineNanoseconds = Math.Max(DeadlineNanoseconds, until);
        Loop.Timers(Clock).Add(this);
    }

    private protected override void OnStateChanged(SourceState previous, SourceState current)
    {
        var timers = Loop.Timers(Clock);
        if (current == SourceState.Off)
            timers.Remove(this);
        else if (previous == SourceState.Off)
            timers.Add(this);
    }

    internal override void Dispatch()
    {
        if (PeriodNanoseconds > 0 && State == SourceState.On)
        {
            // Repeating: the next deadline counts from this one, not from when we ran, so the period does
            // not drift; one that fell behind by more than a period skips to the next one in the future.
            long next = DeadlineNanoseconds + PeriodNanoseconds;
            long now = Loop.Now(Clock);
            if (next <= now)
                next = now + PeriodNanoseconds;
            DeadlineNanoseconds = next;
            Loop.Timers(Clock).Add(this);
        }
        else if (State == SourceState.Oneshot)
        {
            State = SourceState.Off; // before the callback, so that the callback may re-arm it
        }
        _callback(this);
    }

    internal override void AfterDispatch()
    {
        // Handled in Dispatch: a oneshot timer is switched off before its callback runs.
    }

    private protected override void OnDispose() => Loop.Timers(Clock).Remove(this);

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

/// <summary>The timers of one clock: a min-heap by deadline (what is due) and one by latest allowed moment
/// (when the loop must wake). Both support removal by index, so cancel is O(log n).</summary>
internal sealed class TimerQueue
{
    private TimerSource[] _earliest = new TimerSource[16], _latest = new TimerSource[16];
    private int _count;

    public int Count => _count;

    public TimerSource? Earliest => _count > 0 ? _earliest[0] : null;
    public TimerSource? Latest => _count > 0 ? _latest[0] : null;

    public void Add(TimerSource timer)
    {
        if (timer.EarliestIndex >= 0)
            return;
        if (_count == _earliest.Length)
        {
            Array.Resize(ref _earliest, _count * 2);
            Array.Resize(ref _latest, _count * 2);
        }
        _earliest[_count] = timer;
        timer.EarliestIndex = _count;
        _latest[_count] = timer;
        timer.LatestIndex = _count;
        _count++;
        Up(_earliest, timer.EarliestIndex, byLatest: false);
        Up(_latest, timer.LatestIndex, byLatest: true);
    }

    public void Remove(TimerSource timer)
    {
        if (timer.EarliestIndex < 0)
            return;
        RemoveAt(_earliest, timer.EarliestIndex, byLatest: false);
        RemoveAt(_latest, timer.LatestIndex, byLatest: true);
        timer.EarliestIndex = timer.LatestIndex = -1;
        _count--;
    }

    private void RemoveAt(TimerSource[] heap, int index, bool byLatest)
    {
        int last = _count - 1;
        if (index != last)
        {
            heap[index] = heap[last];
            SetIndex(heap[index], index, byLatest);
            heap[last] = null!;
            if (!Up(heap, index, byLatest))
                Down(heap, index, byLatest, last);
        }
        else
        {
            heap[last] = null!;
        }
    }

    private static long Key(TimerSource t, bool byLatest) => byLatest ? t.LatestNanoseconds : t.DeadlineNanoseconds;

    private static void SetIndex(TimerSource t, int index, bool byLatest)
    {
        if (byLatest) t.LatestIndex = index; else t.EarliestIndex = index;
    }

    private static bool Up(TimerSource[] heap, int index, bool byLatest)
    {
        var item = heap[index];
        long key = Key(item, byLatest);
        int start = index;
        while (index > 0)
        {
            int parent = (index - 1) / 2;
            if (Key(heap[parent], byLatest) <= key)
                break;
            heap[index] = heap[parent];
            SetIndex(heap[index], index, byLatest);
            index = parent;
        }
        heap[index] = item;
        SetIndex(item, index, byLatest);
        return index != start;
    }

    private static void Down(TimerSource[] heap, int index, bool byLatest, int count)
    {
        var item = heap[index];
        long key = Key(item, byLatest);
        while (true)
        {
            int child = 2 * index + 1;
            if (child >= count)
                break;
            if (child + 1 < count && Key(heap[child + 1], byLatest) < Key(heap[child], byLatest))
                child++;
            if (Key(heap[child], byLatest) >= key)
                break;
            heap[index] = heap[child];
            SetIndex(heap[index], index, byLatest);
            index = child;
        }
        heap[index] = item;
        SetIndex(item, index, byLatest);
    }
}
