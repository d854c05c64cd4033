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

/// <summary>One slim timer as a plain record (48 bytes): no object, no header, no kernel timer. Its heap and heap
/// position live in it so that cancel is O(log n); a free record links the free list through
/// <see cref="HeapIndex"/>.</summary>
internal struct TimerRecord
{
    public long Deadline, Latest, Period;
    /// <summary>The slim timer's <see cref="Action{SlimTimer}"/> (an object, so that the table could hold other
    /// targets); null when free (so a freed record holds nothing alive).</summary>
    public object? Target;
    public int Priority, Generation, HeapIndex;
    public byte Clock, Group;
    public TimerPhase Phase;
}

/// <summary>
/// Every timer of one loop: slim timers as records in one array (a free list reuses them, a generation in each
/// tells a live handle from a stale one), and per clock, for each accuracy in use, one 4-ary min-heap by deadline
/// of record numbers and one of <see cref="TimerSource"/>s themselves (a source is its own record: its deadline,
/// heap position and group are its fields, so an armed one costs its object and one reference here). Within one accuracy, deadline order is also latest-moment order, so each heap's root gives both
/// what is due and when the loop must wake (its deadline + the accuracy): a timer sits in one heap, where
/// sd-event keeps two prioqs (earliest, latest) and pays for both on every add and cancel. Programs use a
/// handful of accuracies (libevent's "common timeouts" rest on the same observation); past
/// <see cref="MaxGroups"/> on one clock, a timer joins the group with the largest accuracy below its own
/// (never waking late, only coalescing less), or the zero-accuracy group. A group, once made, keeps its place
/// and accuracy for the table's life, so a group number names an accuracy (a TimerSource keeps its group, not
/// its accuracy). 4-ary as libev's heap: half the depth of a binary one, and a node's four children are adjacent
/// in memory. Adding or cancelling allocates nothing once the arrays have grown. A slim timer armed since its heap was
/// last read waits past the heap's end, unsorted, and is sifted in by the next read: so a timeout added and
/// cancelled within one iteration, the common case, never sifts (see <see cref="Settle"/>).
/// </summary>
internal sealed class TimerTable
{
    private const int Arity = 4;
    /// <summary>Accuracy groups one clock keeps at most.</summary>
    internal const int MaxGroups = 16;

    /// <summary>The timers of one clock with one accuracy: slim timers' records and TimerSources, a heap each.</summary>
    private sealed class Group(long accuracy)
    {
        public readonly long Accuracy = accuracy;
        /// <summary>Record numbers: <c>Heap[..Sorted]</c> is the 4-ary heap; <c>Heap[Sorted..Count]</c> are records
        /// armed since the heap was last read, in no order (see <see cref="Settle"/>).</summary>
        public int[] Heap = new int[16];
        public int Count, Sorted;
        public SourceEntry[] Sources = []; // grown on the first TimerSource: many groups hold slim timers only
        public int SourceCount;
    }

    /// <summary>A heap entry of the TimerSources' heaps: a struct around the reference, so that a store into the
    /// array needs no covariance check (an array of a class type has one on every store).</summary>
    private struct SourceEntry
    {
        public TimerSource Source;
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

    /// <summary>Records in use (armed, due, or firing) and armed TimerSources: what may still run.</summary>
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
        Arm(ref record, slot);
        return slot;
    }

    /// <summary>Puts a record that is not in a heap (new, due or firing) into the heap of its clock and accuracy (past
    /// its end until the heap is next read).</summary>
    public void Arm(int slot) => Arm(ref _records[slot], slot);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Arm(ref TimerRecord record, int slot)
    {
        var timers = _clocks[record.Clock];
        var group = GroupFor(timers, record.Latest - record.Deadline, out int groupIndex);
        record.Phase = TimerPhase.Armed;
        record.Group = (byte)groupIndex;
        timers.Armed++;
        // Appended past the heap, not sifted in: most timers are cancelled before they are due (timeouts), and one
        // added and cancelled before the loop next reads its heaps then costs no sift at either end. Settle sifts
        // the rest in when the heap is read (FirstDue, EarliestLatest) or an entry of the heap proper leaves it.
        if (group.Count == group.Heap.Length)
            Array.Resize(ref group.Heap, group.Count * 2);
        int index = group.Count++;
        group.Heap[index] = slot;
        record.HeapIndex = index;
    }

    /// <summary>Sifts the records armed since <paramref name="group"/>'s heap was last read into it, in the tail's
    /// order: the order they were armed, but for the last entry a tail cancel moved into the freed place. Either way a
    /// valid heap; only the order among equal deadlines may differ from eager pushes', and none is promised.</summary>
    private void Settle(Group group)
    {
        var keys = new RecordKeys(_records);
        for (int i = group.Sorted; i < group.Count; i++)
            Up(group.Heap, i, keys);
        group.Sorted = group.Count;
    }

    /// <summary>The group a timer of <paramref name="accuracy"/> on <paramref name="clock"/> goes in (a TimerSource keeps
    /// it; see <see cref="GroupAccuracy"/>).</summary>
    public byte GroupOf(LoopClock clock, long accuracy)
    {
        GroupFor(_clocks[(int)clock], accuracy, out int index);
        return (byte)index;
    }

    /// <summary>The accuracy of <paramref name="group"/> on <paramref name="clock"/>, the same for the table's life.</summary>
    public long GroupAccuracy(LoopClock clock, byte group) => _clocks[(int)clock].Groups[group].Accuracy;

    /// <summary>Puts a TimerSource that is not in a heap into the TimerSource heap of its clock and group.</summary>
    public void Arm(TimerSource source)
    {
        var timers = _clocks[(int)source.Clock];
        var group = timers.Groups[source.Group];
        timers.Armed++;
        _live++;
        Push(ref group.Sources, ref group.SourceCount, new SourceEntry { Source = source }, default(SourceKeys));
    }

    /// <summary>Takes an armed TimerSource out of its heap.</summary>
    public void Disarm(TimerSource source)
    {
        var timers = _clocks[(int)source.Clock];
        var group = timers.Groups[source.Group];
        timers.Armed--;
        _live--;
        RemoveAt(group.Sources, ref group.SourceCount, source.HeapIndex, default(SourceKeys));
        source.HeapIndex = -1;
    }

    /// <summary>The group of <paramref name="accuracy"/> on a clock: the one used last (the usual case), one
    /// found or made, or past <see cref="MaxGroups"/> the one with the largest accuracy not above it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Group GroupFor(ClockTimers timers, long accuracy, out int index)
    {
        index = timers.LastGroup;
        var group = timers.Groups[index]; // null only past GroupCount: groups are never removed
        if (group is not null && group.Accuracy == accuracy)
            return group;
        index = timers.LastGroup = FindOrMakeGroup(timers, accuracy);
        return timers.Groups[index];
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
        int index = record.HeapIndex;
        if (index >= group.Sorted)
        {
            // Not in the heap proper yet: the last entry, past the heap too, takes its place; nothing sifts.
            int moved = group.Heap[--group.Count];
            group.Heap[index] = moved;
            _records[moved].HeapIndex = index;
            return;
        }
        if (group.Sorted != group.Count)
        {
            Settle(group); // the last entry must be in the heap proper to fill a place in it
            index = record.HeapIndex;
        }
        RemoveAt(group.Heap, ref group.Count, index, new RecordKeys(_records));
        group.Sorted = group.Count;
    }

    /// <summary>Frees record <paramref name="slot"/> if it is in use under <paramref name="generation"/>
    /// (<see cref="IsLive"/> and <see cref="Free(int)"/> with one look-up: a slim timer's cancel).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Free(int slot, int generation)
    {
        var records = _records;
        if ((uint)slot >= (uint)records.Length)
            return;
        ref var record = ref records[slot];
        if (record.Generation == generation && record.Phase != TimerPhase.Free)
            Free(ref record, slot);
    }

    /// <summary>Disarms and frees a record; its generation moves on, so every handle to it is stale.</summary>
    public void Free(int slot) => Free(ref _records[slot], slot);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Free(ref TimerRecord record, int slot)
    {
        if (record.Phase == TimerPhase.Armed)
            RemoveFromHeap(ref record);
        record.Target = null;
        record.Phase = TimerPhase.Free;
        record.Generation++;
        record.HeapIndex = _freeHead;
        _freeHead = slot;
        _live--;
    }

    /// <summary>The armed timer on <paramref name="clock"/> with the earliest deadline (over every accuracy, slim or
    /// not), if that deadline is at or before <paramref name="now"/>: a record number (and <paramref name="source"/>
    /// null), or -1 and the TimerSource in <paramref name="source"/>; -1 and null when none is due. So due timers are
    /// taken in deadline order. Of equal deadlines the later group's goes first, and in a group the TimerSource.</summary>
    public int FirstDue(LoopClock clock, long now, out TimerSource? source)
    {
        source = null;
        var timers = _clocks[(int)clock];
        if (timers.Armed == 0)
            return -1;
        int first = -1;
        long firstDeadline = now;
        for (int i = 0; i < timers.GroupCount; i++)
        {
            var group = timers.Groups[i];
            if (group.Sorted != group.Count)
                Settle(group);
            if (group.Count > 0)
            {
                int slot = group.Heap[0];
                long deadline = _records[slot].Deadline;
                if (deadline <= firstDeadline)
                {
                    first = slot;
                    source = null;
                    firstDeadline = deadline;
                }
            }
            if (group.SourceCount > 0 && group.Sources[0].Source is var root && root.DeadlineNanoseconds <= firstDeadline)
            {
                first = -1;
                source = root;
                firstDeadline = root.DeadlineNanoseconds;
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
            if (group.Sorted != group.Count)
                Settle(group);
            if (group.Count > 0)
                earliest = Math.Min(earliest, _records[group.Heap[0]].Deadline + group.Accuracy);
            if (group.SourceCount > 0)
                earliest = Math.Min(earliest, group.Sources[0].Source.DeadlineNanoseconds + group.Accuracy);
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

    /// <summary>How a heap reads an entry's deadline and tells the entry where it now is. A struct type argument, so
    /// that each heap kind gets its own compiled code with the calls inlined.</summary>
    private interface IHeapKeys<TEntry>
        where TEntry : struct
    {
        long Deadline(TEntry entry);
        void Place(TEntry entry, int index);
    }

    /// <summary>The slim timers' heaps: record numbers; the deadline and position are in the records.</summary>
    private readonly struct RecordKeys(TimerRecord[] records) : IHeapKeys<int>
    {
        public long Deadline(int slot) => records[slot].Deadline;
        public void Place(int slot, int index) => records[slot].HeapIndex = index;
    }

    /// <summary>The TimerSources' heaps: the sources; the deadline and position are their fields.</summary>
    private readonly struct SourceKeys : IHeapKeys<SourceEntry>
    {
        public long Deadline(SourceEntry entry) => entry.Source.DeadlineNanoseconds;
        public void Place(SourceEntry entry, int index) => entry.Source.HeapIndex = index;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Push<TEntry, TKeys>(ref TEntry[] heap, ref int count, TEntry entry, TKeys keys)
        where TEntry : struct
        where TKeys : struct, IHeapKeys<TEntry>
    {
        if (count == heap.Length)
            Array.Resize(ref heap, Math.Max(16, count * 2));
        int index = count++;
        heap[index] = entry;
        keys.Place(entry, index);
        Up(heap, index, keys);
    }

    /// <summary>Takes entry <paramref name="index"/> out: the last entry fills its place and sifts. The freed end is
    /// cleared, so a TimerSource heap holds no cancelled source alive.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RemoveAt<TEntry, TKeys>(TEntry[] heap, ref int count, int index, TKeys keys)
        where TEntry : struct
        where TKeys : struct, IHeapKeys<TEntry>
    {
        int last = --count;
        var moved = heap[last];
        heap[last] = default;
        if (index == last)
            return;
        heap[index] = moved;
        keys.Place(moved, index);
        if (!Up(heap, index, keys))
            Down(heap, index, last, keys);
    }

    private static bool Up<TEntry, TKeys>(TEntry[] heap, int index, TKeys keys)
        where TEntry : struct
        where TKeys : struct, IHeapKeys<TEntry>
    {
        var item = heap[index];
        long key = keys.Deadline(item);
        int start = index;
        while (index > 0)
        {
            int parent = (index - 1) / Arity;
            var parentItem = heap[parent];
            if (keys.Deadline(parentItem) <= key)
                break;
            heap[index] = parentItem;
            keys.Place(parentItem, index);
            index = parent;
        }
        if (index == start)
            return false;
        heap[index] = item;
        keys.Place(item, index);
        return true;
    }

    private static void Down<TEntry, TKeys>(TEntry[] heap, int index, int count, TKeys keys)
        where TEntry : struct
        where TKeys : struct, IHeapKeys<TEntry>
    {
        var item = heap[index];
        long key = keys.Deadline(item);
        while (true)
        {
            int first = Arity * index + 1;
            if (first >= count)
                break;
            int end = Math.Min(first + Arity, count), smallest = first;
            long smallestKey = keys.Deadline(heap[first]);
            for (int child = first + 1; child < end; child++)
            {
                long childKey = keys.Deadline(heap[child]);
                if (childKey < smallestKey)
                {
                    smallest = child;
                    smallestKey = childKey;
                }
            }
            if (smallestKey >= key)
                break;
            var smallestItem = heap[smallest];
            heap[index] = smallestItem;
            keys.Place(smallestItem, index);
            index = smallest;
        }
        heap[index] = item;
        keys.Place(item, index);
    }
}
