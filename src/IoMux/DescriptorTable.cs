using System.Runtime.InteropServices;
using IoMux.Interop;

namespace IoMux;

/// <summary>One descriptor as a backend sees it.</summary>
internal sealed class DescriptorEntry
{
    internal DescriptorEntry(int fd, int slot, uint generation)
    {
        Descriptor = fd;
        Slot = slot;
        Generation = generation;
    }

    /// <summary>The descriptor number.</summary>
    public int Descriptor { get; }
    /// <summary>The token to report in events.</summary>
    public ulong Token { get; internal set; }
    /// <summary>What the registration watches.</summary>
    public Interest Interest { get; internal set; }
    /// <summary>The trigger mode.</summary>
    public TriggerMode Mode { get; internal set; }
    /// <summary>The directions currently armed (emulated edge and oneshot clear them after reporting).</summary>
    public Interest Armed { get; set; }
    /// <summary>What the descriptor is (for backends that derive hangups); <see cref="DescriptorKind.Other"/> when unknown.</summary>
    internal DescriptorKind Kind { get; set; }
    /// <summary>For stream sockets and pipes a zero-byte readable probe means end of stream.</summary>
    internal bool CanDeriveEndOfStream { get; set; }
    internal int Slot { get; }
    internal uint Generation { get; }
    internal bool Removed { get; set; }
    /// <summary>The handle the caller registered, or null for a raw descriptor. It is not pinned (a pinned
    /// <c>SafeSocketHandle</c> makes <c>Socket.Dispose</c> spin forever), so the wait path checks
    /// <see cref="SafeHandle.IsClosed"/> instead: events of a closed handle never reach the caller.</summary>
    internal SafeHandle? Owner { get; init; }
    /// <summary>The descriptor was closed while registered (<see cref="PollerBackend.StopWatchingClosed(DescriptorEntry)"/>):
    /// the backend stopped watching it and keeps the entry only until the caller deregisters it.</summary>
    internal bool Closed { get; set; }
    /// <summary>The <see cref="Poller"/>'s registration object for this entry (null when a backend is used directly):
    /// the one map from descriptor to registration, so the poller keeps none of its own.</summary>
    internal Registration? Registration { get; set; }

    /// <summary>After an event was reported: oneshot disarms every direction, edge the reported ones (they
    /// come back through <see cref="DescriptorTable.TryArmAfterWouldBlock"/> when the consumer hits would-block); level
    /// keeps everything. Returns true when the armed set changed.</summary>
    public bool DisarmReported(Readiness reported)
    {
        var armed = Mode switch
        {
            TriggerMode.Oneshot => Interest.None,
            TriggerMode.Edge => Armed & ~((reported & Readiness.Readable) != 0 ? Interest.Readable : 0)
                                      & ~((reported & Readiness.Writable) != 0 ? Interest.Writable : 0)
                                      & ~((reported & Readiness.Priority) != 0 ? Interest.Priority : 0),
            _ => Armed,
        };
        if (armed == Armed)
            return false;
        Armed = armed;
        return true;
    }

    /// <summary>The 64-bit value a kernel carries for this entry (epoll data, kevent udata, portev_user):
    /// slot and generation, so that an event for a removed entry whose slot was reused is recognised.</summary>
    public ulong KernelData => ((ulong)Generation << 32) | (uint)Slot;
}

/// <summary>
/// The registrations of one backend: descriptor → entry for the control calls, and kernel data → entry for
/// the wait, with generation-checked slots. Not thread-safe: the backend holds its own lock around
/// mutations; <see cref="Resolve(ulong)"/> is safe without it (it may miss a change made during the wait).
/// </summary>
internal sealed class DescriptorTable
{
    /// <summary>Kernel data reserved for a backend's wake channel; never produced by <see cref="DescriptorEntry.KernelData"/>.</summary>
    public const ulong WakeData = ulong.MaxValue;

    private readonly Dictionary<int, DescriptorEntry> _byDescriptor = new();
    private DescriptorEntry?[] _slots = new DescriptorEntry?[16];
    // Free slots, a stack in an array: Stack<int> is JIT-compiled at start (ReadyToRun cannot precompile an
    // instantiation of another version bubble's generic over a value type), and a socket-activated proxy's client
    // waits for its start-up.
    private int[] _free = new int[16];
    private int _freeCount;
    private int _highWater;
    private uint _generation;

    /// <summary>Live entries.</summary>
    public int Count => _byDescriptor.Count;

    /// <summary>Every live entry; enumerating it with foreach allocates nothing.</summary>
    public Dictionary<int, DescriptorEntry>.ValueCollection Live => _byDescriptor.Values;

    /// <summary>Adds an entry with every interest armed.</summary>
    /// <exception cref="AlreadyRegisteredException">Already present.</exception>
    public DescriptorEntry Add(int fd, ulong token, Interest interest, TriggerMode mode, SafeHandle? owner = null)
    {
        if (_byDescriptor.ContainsKey(fd))
            throw new AlreadyRegisteredException(fd);
        int slot;
        if (_freeCount > 0)
            slot = _free[--_freeCount];
        else
        {
            if (_highWater == _slots.Length)
            {
                var grown = new DescriptorEntry?[_slots.Length * 2];
                Array.Copy(_slots, grown, _slots.Length);
                Volatile.Write(ref _slots, grown);
            }
            slot = _highWater++;
        }
        if (++_generation == uint.MaxValue) _generation = 1;
        var entry = new DescriptorEntry(fd, slot, _generation) { Owner = owner };
        _slots[slot] = entry;
        Update(entry, token, interest, mode);
        _byDescriptor.Add(fd, entry);
        return entry;
    }

    /// <summary>The calls (and the OS numbers) the checks on add use: <see cref="OsCalls.Native"/>, or a model's
    /// when a backend of another OS runs over one (set by the backend before its first registration).</summary>
    public OsCalls Os { get; set; } = OsCalls.Native;

    /// <summary>Adds an entry for a descriptor the backend's kernel call does not check by itself (poll,
    /// select, event ports): it must be open (EBADF otherwise) and waitable (regular files and directories
    /// are refused as on epoll), and its kind decides whether a hangup can be derived for it.</summary>
    /// <exception cref="AlreadyRegisteredException">Already present.</exception>
    public DescriptorEntry AddChecked(int fd, ulong token, Interest interest, TriggerMode mode, SafeHandle? owner, string operation)
    {
        if (Find(fd) is not null)
            throw new AlreadyRegisteredException(fd);
        var kind = Os.RequireWaitable(fd, operation);
        var entry = Add(fd, token, interest, mode, owner);
        entry.Kind = kind;
        entry.CanDeriveEndOfStream = HangupDerivation.CanDerive(Os, fd, kind);
        return entry;
    }

    /// <summary>The consumer hit would-block in <paramref name="directions"/>: arms them again on an edge entry.
    /// Returns the entry when its armed set grew (the backend then watches it again), else null (unknown
    /// descriptor — deleted meanwhile by another thread —, not edge, or nothing new).</summary>
    public DescriptorEntry? TryArmAfterWouldBlock(int fd, Interest directions)
    {
        if (Find(fd) is not { Mode: TriggerMode.Edge } entry)
            return null;
        var armed = entry.Armed | (directions & entry.Interest);
        if (armed == entry.Armed)
            return null;
        entry.Armed = armed;
        return entry;
    }

    /// <summary>Sets token, interest and mode, and arms every interest again.</summary>
    public void Update(DescriptorEntry entry, ulong token, Interest interest, TriggerMode mode)
    {
        entry.Token = token;
        entry.Interest = interest;
        entry.Mode = mode;
        entry.Armed = interest;
    }

    /// <summary>The entry for <paramref name="fd"/>.</summary>
    /// <exception cref="NotRegisteredException">Not present.</exception>
    public DescriptorEntry Get(int fd) =>
        _byDescriptor.TryGetValue(fd, out var entry) ? entry : throw new NotRegisteredException(fd);

    /// <summary>The entry for <paramref name="fd"/>, or null.</summary>
    public DescriptorEntry? Find(int fd) => _byDescriptor.GetValueOrDefault(fd);

    /// <summary>Removes <paramref name="entry"/>; later events carrying its kernel data resolve to nothing.</summary>
    public void Remove(DescriptorEntry entry)
    {
        entry.Removed = true;
        _byDescriptor.Remove(entry.Descriptor);
        _slots[entry.Slot] = null;
        if (_freeCount == _free.Length)
        {
            var grown = new int[_free.Length * 2];
            Array.Copy(_free, grown, _freeCount);
            _free = grown;
        }
        _free[_freeCount++] = entry.Slot;
    }

    /// <summary>The live entry that <paramref name="kernelData"/> names, or null when it is stale.</summary>
    public DescriptorEntry? Resolve(ulong kernelData) => Resolve(Slots, kernelData);

    /// <summary>The slot array as it is now, to resolve a whole batch of events with one volatile read.</summary>
    public DescriptorEntry?[] Slots => Volatile.Read(ref _slots);

    /// <summary>The live entry of <paramref name="slots"/> that <paramref name="kernelData"/> names, or null when stale.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static DescriptorEntry? Resolve(DescriptorEntry?[] slots, ulong kernelData)
    {
        uint slot = (uint)kernelData;
        if (slot >= (uint)slots.Length)
            return null;
        var entry = slots[slot];
        return entry is not null && entry.Generation == (uint)(kernelData >> 32) && !entry.Removed ? entry : null;
    }
}
