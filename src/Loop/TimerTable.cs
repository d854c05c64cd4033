using System.Runtime.CompilerServices;

namespace IoMux.Loop;

/// <summary>Where a timer record is in its life.</summary>
internal enum TimerPhase : byte
{
    /// <summary>On the free list; its generation was bumped, so old handles are stale.</summary>
    Free,
    /// <summary>In the heap of its clock and accuracy, waiting for its deadline.</summary>
    Armed,
    /// <summary>Taken out of the heaps as due, waiting for its turn in this iteration's dispatch.</summary>
    Due,
    /// <summary>A oneshot whose callback runs now: freed after it unless the callback re-armed it.</summary>
    Firing,
}

/// <summary>One timer as a plain record (48 bytes): no object, no header, no kernel timer. Its heap and heap
/// position live in it so that cancel is O(log n); a free record links the free list through
/// <see cref="HeapIndex"/>.</summary>
internal struct TimerRecord
{
    public long Deadline, Latest, Period;
    /// <summary>The slim timer's <see cref="Action{SlimTimer}"/>, or the <see cref="TimerSource"/> this
    /// record arms; null when free (so a freed record holds nothing alive).</summary>
    public object? Target;
    public int Priority, Generation, HeapIndex;
    public byte Clock, Group;
    public TimerPhase Phase;
}

/// <summary>
/// Every timer of one loop: records in one array (a free list reuses them, a generation in each tells a live
/// handle from a stale one), and per clock one 4-ary min-heap of record numbers by deadline for each accuracy
/// in use. Within one accuracy, deadline order is also latest-moment order, so each heap's root gives both
/// what is due and when the loop must wake (its deadline + the accuracy): a timer sits in one heap, where
/// sd-event keeps two prioqs (earliest, latest) and pays for both on every add and cancel. Programs use a
/// handful of accuracies (libevent's "common timeouts" rest on the same observation); past
/// <see cref="MaxGroups"/> on one clock, a timer joins the group with the largest accuracy below its own
/// (never waking late, only coalescing less), or the zero-accuracy group. 4-ary as libev's heap: half the
/// depth of a binary one, and a node's four children are adjacent in memory. Adding or cancelling allocates
/// nothing once the arrays have grown.
/// </summary>
internal sealed class TimerTable
{
    private const int Arity = 4;
    /// <summary>Accuracy groups one clock keeps at most.</summary>
    internal const int MaxGroups = 16;

    /// <summary>The timers of one clock with one accuracy.</summary>
    private sealed class Group(long accuracy)
    {
        public readonly long Accuracy = accuracy;
        public int[] Heap = new int[16];
        public int Count;
    }

    /// <summary>The groups of one clock; <see cref="Armed"/> counts their timers.</summary>
    private sealed class ClockTimers
    {
        public readonly Group[] Groups = new Group[MaxGroups];
        public int GroupCount, Armed, LastGroup;
    }

    private TimerRecord[] _records = new TimerRecord[16];
    private int _highWater, _freeHead = -1, _live;
    private readonly ClockTimers[] _clocks = [new(), new(), new()];

    /// <summary>Records in use (armed, due, or firing).</summary>
    public int LiveCount => _live;

    /// <summary>Timers armed on <paramref name="clock"/>.</summary>
    public int ArmedCount(LoopClock clock) => _clocks[(int)clock].Armed;

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
            _freeHead = _records[slot].HeapIndex;
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

    /// <summary>Puts a record that is not in a heap (new, due or firing) into the heap of its clock and accuracy.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Arm(int slot)
    {
        ref var record = ref _records[slot];
        var timers = _clocks[record.Clock];
        int groupIndex = GroupFor(timers, record.Latest - record.Deadline);
        var group = timers.Groups[groupIndex];
        record.Phase = TimerPhase.Armed;
        record.Group = (byte)groupIndex;
        if (group.Count == group.Heap.Length)
            Array.Resize(ref group.Heap, group.Count * 2);
        int index = group.Count++;
        timers.Armed++;
        group.Heap[index] = slot;
        record.HeapIndex = index;
        Up(group.Heap, index);
    }

    /// <summary>The group of <paramref name="accuracy"/> on a clock: the one used last (the usual case), one
    /// found or made, or past <see cref="MaxGroups"/> the one with the largest accuracy not above it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int GroupFor(ClockTimers timers, long accuracy)
    {
        int last = timers.LastGroup;
        if (last < timers.GroupCount && timers.Groups[last].Accuracy == accuracy)
            return last;
        return timers.LastGroup = FindOrMakeGroup(timers, accuracy);
    }

    private static int FindOrMakeGroup(ClockTimers timers, long accuracy)
    {
        int below = -1;
        for (int i = 0; i < timers.GroupCount; i++)
        {
            long groupAccuracy = timers.Groups[i].Accuracy;
            if (groupAccuracy == accuracy)
                return i;
            if (groupAccuracy < accuracy && (below < 0 || groupAccuracy > timers.Groups[below].Accuracy))
                below = i;
        }
        if (timers.GroupCount < MaxGroups - 1 || (timers.GroupCount == MaxGroups - 1 && below < 0 && accuracy == 0))
        {
            timers.Groups[timers.GroupCount] = new Group(accuracy);
            return timers.GroupCount++;
        }
        if (below >= 0)
            return below;
        // The last place is kept for a zero-accuracy group, which every accuracy can fall back to.
        for (int i = 0; i < timers.GroupCount; i++)
            if (timers.Groups[i].Accuracy == 0)
                return i;
        timers.Groups[timers.GroupCount] = new Group(0);
        return timers.GroupCount++;
    }

    /// <summary>Takes an armed record out of its heap; it stays in use.</summary>
    public void Disarm(int slot)
    {
        ref var record = ref _records[slot];
        if (record.Phase != TimerPhase.Armed)
            return;
        RemoveFromHeap(ref record);
        record.HeapIndex = -1;
        record.Phase = TimerPhase.Due;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void RemoveFromHeap(ref TimerRecord record)
    {
        var timers = _clocks[record.Clock];
        var group = timers.Groups[record.Group];
        timers.Armed--;
        int last = --group.Count, index = record.HeapIndex;
        if (index == last)
            return;
        var heap = group.Heap;
        int moved = heap[last];
        heap[index] = moved;
        _records[moved].HeapIndex = index;
        if (!Up(heap, index))
            Down(heap, index, last);
    }

    /// <summary>Disarms and frees a record; its generation moves on, so every handle to it is stale.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Free(int slot)
    {
        ref var record = ref _records[slot];
        if (record.Phase == TimerPhase.Armed)
            RemoveFromHeap(ref record);
        record.Target = null;
        record.Phase = TimerPhase.Free;
        record.Generation++;
        record.HeapIndex = _freeHead;
        _freeHead = slot;
        _live--;
    }

    /// <summary>The armed record on <paramref name="clock"/> with the earliest deadline (over every accuracy), if
    /// that deadline is at or before <paramref name="now"/>; -1 otherwise. So due timers are taken in deadline
    /// order.</summary>
    public int FirstDue(LoopClock clock, long now)
    {
        var timers = _clocks[(int)clock];
        if (timers.Armed == 0)
            return -1;
        int first = -1;
        long firstDeadline = now;
        for (int i = 0; i < timers.GroupCount; i++)
        {
            var group = timers.Groups[i];
            if (group.Count == 0)
                continue;
            int slot = group.Heap[0];
            long deadline = _records[slot].Deadline;
            if (deadline <= firstDeadline)
            {
                first = slot;
                firstDeadline = deadline;
            }
        }
        return first;
    }

    /// <summary>When the loop must wake for <paramref name="clock"/>'s timers: the earliest root deadline +
    /// accuracy over the groups, or <see cref="long.MaxValue"/>.</summary>
    public long EarliestLatest(LoopClock clock)
    {
        var timers = _clocks[(int)clock];
        long earliest = long.MaxValue;
        if (timers.Armed == 0)
            return earliest;
        for (int i = 0; i < timers.GroupCount; i++)
        {
            var group = timers.Groups[i];
            if (group.Count > 0)
                earliest = Math.Min(earliest, _records[group.Heap[0]].Deadline + group.Accuracy);
        }
        return earliest;
    }

    /// <summary>A repeating timer's next deadline counts from its previous one, not from when it ran, so the
    /// period does not drift; one that fell behind by more than a period skips to the next one in the future
    /// rather than firing in a burst.</summary>
    public static long NextPeriodicDeadline(long deadline, long period, long now)
    {
        long next = deadline + period;
        return next <= now ? now + period : next;
    }

    private bool Up(int[] heap, int index)
    {
        var records = _records;
        int item = heap[index];
        long key = records[item].Deadline;
        int start = index;
        while (index > 0)
        {
            int parent = (index - 1) / Arity;
            int parentSlot = heap[parent];
            if (records[parentSlot].Deadline <= key)
                break;
            heap[index] = parentSlot;
            records[parentSlot].HeapIndex = index;
            index = parent;
        }
        if (index == start)
            return false;
        heap[index] = item;
        records[item].HeapIndex = index;
        return true;
    }

    private void Down(int[] heap, int index, int count)
    {
        var records = _records;
        int item = heap[index];
        long key = records[item].Deadline;
        while (true)
        {
            int first = Arity * index + 1;
            if (first >= count)
                break;
            int end = Math.Min(first + Arity, count), smallest = first;
            long smallestKey = records[heap[first]].Deadline;
            for (int child = first + 1; child < end; child++)
            {
                long childKey = records[heap[child]].Deadline;
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
            records[smallestSlot].HeapIndex = index;
            index = smallest;
        }
        heap[index] = item;
        records[item].HeapIndex = index;
    }
}
