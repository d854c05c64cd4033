using System.Runtime.CompilerServices;

namespace IoMux.Loop;

/// <summary>Where a timer record is in its life.</summary>
internal enum TimerPhase : byte
{
    /// <summary>On the free list; its generation was bumped, so old handles are stale.</summary>
    Free,
    /// <summary>In its clock's two heaps, waiting for its deadline.</summary>
    Armed,
    /// <summary>Taken out of the heaps as due, waiting for its turn in this iteration's dispatch.</summary>
    Due,
    /// <summary>A oneshot whose callback runs now: freed after it unless the callback re-armed it.</summary>
    Firing,
}

/// <summary>One timer as a plain record (56 bytes): no object, no header, no kernel timer. Its heap positions
/// live in it so that cancel is O(log n); a free record links the free list through <see cref="EarliestIndex"/>.</summary>
internal struct TimerRecord
{
    public long Deadline, Latest, Period;
    /// <summary>The slim timer's <see cref="Action{SlimTimer}"/>, or the <see cref="TimerSource"/> this
    /// record arms; null when free (so a freed record holds nothing alive).</summary>
    public object? Target;
    public int Priority, Generation, EarliestIndex, LatestIndex;
    public byte Clock;
    public TimerPhase Phase;
}

/// <summary>
/// Every timer of one loop: records in one array (a free list reuses them, a generation in each tells a live
/// handle from a stale one), and per clock two 4-ary min-heaps of record numbers, one by deadline (what is
/// due) and one by latest allowed moment (when the loop must wake). 4-ary as libev's: half the depth of a
/// binary heap, and the four children of a node are adjacent in memory. Adding or cancelling allocates
/// nothing once the arrays have grown.
/// </summary>
internal sealed class TimerTable
{
    private const int Arity = 4;

    /// <summary>The two heaps of one clock.</summary>
    private sealed class ClockHeaps
    {
        public int[] Earliest = new int[16], Latest = new int[16];
        public int Count;
    }

    private TimerRecord[] _records = new TimerRecord[16];
    private int _highWater, _freeHead = -1, _live;
    private readonly ClockHeaps[] _clocks = [new(), new(), new()];

    /// <summary>Records in use (armed, due, or firing).</summary>
    public int LiveCount => _live;

    /// <summary>Timers armed on <paramref name="clock"/>.</summary>
    public int ArmedCount(LoopClock clock) => _clocks[(int)clock].Count;

    /// <summary>The record of <paramref name="slot"/>. Re-read it after anything that may add a timer: the
    /// array is replaced when it grows.</summary>
    public ref TimerRecord this[int slot] => ref _records[slot];

    /// <summary>True when <paramref name="slot"/> is in use under <paramref name="generation"/>.</summary>
    public bool IsLive(int slot, int generation) =>
        (uint)slot < (uint)_highWater && _records[slot].Generation == generation && _records[slot].Phase != TimerPhase.Free;

    /// <summary>Takes a record, fills it and arms it; returns its number.</summary>
    public int Add(LoopClock clock, long deadline, long latest, long period, object target, int priority)
    {
        int slot = _freeHead;
        if (slot >= 0)
        {
            _freeHead = _records[slot].EarliestIndex;
        }
        else
        {
            if (_highWater == _records.Length)
                Array.Resize(ref _records, _highWater * 2);
            slot = _highWater++;
            _records[slot].Generation = 1; // never 0, so that default(SlimTimer) is stale
        }
        ref var record = ref _records[slot];
        record.Deadline = deadline;
        record.Latest = latest;
        record.Period = period;
        record.Target = target;
        record.Priority = priority;
        record.Clock = (byte)clock;
        _live++;
        Arm(slot);
        return slot;
    }

    /// <summary>Puts a record that is not in the heaps (new, due or firing) into its clock's heaps.</summary>
    public void Arm(int slot)
    {
        ref var record = ref _records[slot];
        var heaps = _clocks[record.Clock];
        record.Phase = TimerPhase.Armed;
        if (heaps.Count == heaps.Earliest.Length)
        {
            Array.Resize(ref heaps.Earliest, heaps.Count * 2);
            Array.Resize(ref heaps.Latest, heaps.Count * 2);
        }
        int index = heaps.Count++;
        heaps.Earliest[index] = slot;
        heaps.Latest[index] = slot;
        record.EarliestIndex = index;
        record.LatestIndex = index;
        Up(heaps.Earliest, index, byLatest: false);
        Up(heaps.Latest, index, byLatest: true);
    }

    /// <summary>Takes an armed record out of its heaps; it stays in use.</summary>
    public void Disarm(int slot)
    {
        ref var record = ref _records[slot];
        if (record.Phase != TimerPhase.Armed)
            return;
        var heaps = _clocks[record.Clock];
        int last = --heaps.Count;
        RemoveAt(heaps.Earliest, record.EarliestIndex, last, byLatest: false);
        RemoveAt(heaps.Latest, record.LatestIndex, last, byLatest: true);
        record.EarliestIndex = record.LatestIndex = -1;
        record.Phase = TimerPhase.Due;
    }

    /// <summary>Disarms and frees a record; its generation moves on, so every handle to it is stale.</summary>
    public void Free(int slot)
    {
        Disarm(slot);
        ref var record = ref _records[slot];
        record.Target = null;
        record.Phase = TimerPhase.Free;
        record.Generation++;
        record.EarliestIndex = _freeHead;
        _freeHead = slot;
        _live--;
    }

    /// <summary>The armed record on <paramref name="clock"/> with the earliest deadline, if that deadline is at or
    /// before <paramref name="now"/>; -1 otherwise.</summary>
    public int FirstDue(LoopClock clock, long now)
    {
        var heaps = _clocks[(int)clock];
        if (heaps.Count == 0)
            return -1;
        int slot = heaps.Earliest[0];
        return _records[slot].Deadline <= now ? slot : -1;
    }

    /// <summary>The earliest latest-allowed moment on <paramref name="clock"/>, or <see cref="long.MaxValue"/>.</summary>
    public long EarliestLatest(LoopClock clock)
    {
        var heaps = _clocks[(int)clock];
        return heaps.Count == 0 ? long.MaxValue : _records[heaps.Latest[0]].Latest;
    }

    /// <summary>A repeating timer's next deadline counts from its previous one, not from when it ran, so the
    /// period does not drift; one that fell behind by more than a period skips to the next one in the future
    /// rather than firing in a burst.</summary>
    public static long NextPeriodicDeadline(long deadline, long period, long now)
    {
        long next = deadline + period;
        return next <= now ? now + period : next;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private long Key(int slot, bool byLatest) => byLatest ? _records[slot].Latest : _records[slot].Deadline;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void SetIndex(int slot, int index, bool byLatest)
    {
        if (byLatest) _records[slot].LatestIndex = index; else _records[slot].EarliestIndex = index;
    }

    private void RemoveAt(int[] heap, int index, int last, bool byLatest)
    {
        if (index == last)
            return;
        heap[index] = heap[last];
        SetIndex(heap[index], index, byLatest);
        if (!Up(heap, index, byLatest))
            Down(heap, index, last, byLatest);
    }

    private bool Up(int[] heap, int index, bool byLatest)
    {
        int item = heap[index];
        long key = Key(item, byLatest);
        int start = index;
        while (index > 0)
        {
            int parent = (index - 1) / Arity;
            if (Key(heap[parent], byLatest) <= key)
                break;
            heap[index] = heap[parent];
            SetIndex(heap[index], index, byLatest);
            index = parent;
        }
        if (index == start)
            return false;
        heap[index] = item;
        SetIndex(item, index, byLatest);
        return true;
    }

    private void Down(int[] heap, int index, int count, bool byLatest)
    {
        int item = heap[index];
        long key = Key(item, byLatest);
        while (true)
        {
            int first = Arity * index + 1;
            if (first >= count)
                break;
            int end = Math.Min(first + Arity, count), smallest = first;
            long smallestKey = Key(heap[first], byLatest);
            for (int child = first + 1; child < end; child++)
            {
                long childKey = Key(heap[child], byLatest);
                if (childKey < smallestKey)
                {
                    smallest = child;
                    smallestKey = childKey;
                }
            }
            if (smallestKey >= key)
                break;
            heap[index] = heap[smallest];
            SetIndex(heap[index], index, byLatest);
            index = smallest;
        }
        heap[index] = item;
        SetIndex(item, index, byLatest);
    }
}
