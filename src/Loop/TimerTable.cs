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
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool IsLive(int slot, int generation)
    {
        var records = _records;
        if ((uint)slot >= (uint)records.Length)
            return false;
        ref var record = ref records[slot];
        return record.Generation == generation && record.Phase != TimerPhase.Free;
    }

    /// <summary>Takes a record, fills it and arms it; returns its number.</summary>
    public int Add(LoopClock clock, long deadline, long latest, long period, object target, int priority) =>
        Add(clock, deadline, latest, period, target, priority, out _);

    /// <summary>Takes a record, fills it and arms it; returns its number and its generation.</summary>
    public int Add(LoopClock clock, long deadline, long latest, long period, object target, int priority, out int generation)
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
        generation = record.Generation;
        _live++;
        Arm(slot);
        return slot;
    }

    /// <summary>Puts a record that is not in the heaps (new, due or firing) into its clock's heaps.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
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
        Up<ByDeadline>(heaps.Earliest, index);
        Up<ByLatest>(heaps.Latest, index);
    }

    /// <summary>Takes an armed record out of its heaps; it stays in use.</summary>
    public void Disarm(int slot)
    {
        ref var record = ref _records[slot];
        if (record.Phase != TimerPhase.Armed)
            return;
        RemoveFromHeaps(ref record);
        record.EarliestIndex = record.LatestIndex = -1;
        record.Phase = TimerPhase.Due;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void RemoveFromHeaps(ref TimerRecord record)
    {
        var heaps = _clocks[record.Clock];
        int last = --heaps.Count;
        RemoveAt<ByDeadline>(heaps.Earliest, record.EarliestIndex, last);
        RemoveAt<ByLatest>(heaps.Latest, record.LatestIndex, last);
    }

    /// <summary>Disarms and frees a record; its generation moves on, so every handle to it is stale.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Free(int slot)
    {
        ref var record = ref _records[slot];
        if (record.Phase == TimerPhase.Armed)
            RemoveFromHeaps(ref record);
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

    // The two heaps differ only in the key they order by and the position field they keep: a generic method
    // over a struct key is compiled once per key, with no branch on which heap it is.
    private interface IHeapKey
    {
        static abstract long Key(ref TimerRecord record);
        static abstract ref int Position(ref TimerRecord record);
    }

    private struct ByDeadline : IHeapKey
    {
        public static long Key(ref TimerRecord record) => record.Deadline;
        public static ref int Position(ref TimerRecord record) => ref record.EarliestIndex;
    }

    private struct ByLatest : IHeapKey
    {
        public static long Key(ref TimerRecord record) => record.Latest;
        public static ref int Position(ref TimerRecord record) => ref record.LatestIndex;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void RemoveAt<TKey>(int[] heap, int index, int last) where TKey : struct, IHeapKey
    {
        if (index == last)
            return;
        int moved = heap[last];
        heap[index] = moved;
        TKey.Position(ref _records[moved]) = index;
        if (!Up<TKey>(heap, index))
            Down<TKey>(heap, index, last);
    }

    private bool Up<TKey>(int[] heap, int index) where TKey : struct, IHeapKey
    {
        var records = _records;
        int item = heap[index];
        long key = TKey.Key(ref records[item]);
        int start = index;
        while (index > 0)
        {
            int parent = (index - 1) / Arity;
            int parentSlot = heap[parent];
            if (TKey.Key(ref records[parentSlot]) <= key)
                break;
            heap[index] = parentSlot;
            TKey.Position(ref records[parentSlot]) = index;
            index = parent;
        }
        if (index == start)
            return false;
        heap[index] = item;
        TKey.Position(ref records[item]) = index;
        return true;
    }

    private void Down<TKey>(int[] heap, int index, int count) where TKey : struct, IHeapKey
    {
        var records = _records;
        int item = heap[index];
        long key = TKey.Key(ref records[item]);
        while (true)
        {
            int first = Arity * index + 1;
            if (first >= count)
                break;
            int end = Math.Min(first + Arity, count), smallest = first;
            long smallestKey = TKey.Key(ref records[heap[first]]);
            for (int child = first + 1; child < end; child++)
            {
                long childKey = TKey.Key(ref records[heap[child]]);
                if (childKey < smallestKey)
                {
                    smallest = child;
                    smallestKey = childKey;
                }
            }
            if (smallestKey >= key)
                break;
            int smallestSlot = heap[smallest];
            heap[index] = smallestSlot;
            TKey.Position(ref records[smallestSlot]) = index;
            index = smallest;
        }
        heap[index] = item;
        TKey.Position(ref records[item]) = index;
    }
}
