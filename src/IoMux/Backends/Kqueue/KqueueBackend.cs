using System.Diagnostics;
using System.Runtime.InteropServices;
using IoMux.Interop;
using static IoMux.Backends.Kqueue.Kq;

namespace IoMux.Backends.Kqueue;

/// <summary>
/// kqueue(2). Each direction is its own filter (EVFILT_READ, EVFILT_WRITE, EVFILT_EXCEPT for urgent data),
/// so the backend reconciles kqueue's per-filter model with the contract's per-registration one:
/// <list type="bullet">
/// <item>the kevents of one registration in one batch are merged into one event;</item>
/// <item>edge is native (EV_CLEAR); level is the default;</item>
/// <item>oneshot must disarm the whole registration, but EV_ONESHOT is per filter (bun#23988): filters are
/// added with EV_DISPATCH, and when one reports, its siblings are disabled at once (a sibling's event in
/// the same batch is merged into the one event);</item>
/// <item>EV_EOF on the read filter is a read hangup; on the write filter alone it only means this side can
/// no longer write (a local shutdown(SHUT_WR) reports it): never a hangup by itself. Both together, or the
/// read side of a pipe, are a hangup. EV_EOF with a non-zero fflags carries the socket error.</item>
/// </list>
/// Control calls use EV_RECEIPT, so each change's error comes back on its own. The wake is EVFILT_USER where
/// the OS has it (probed at start), a pipe otherwise.
/// </summary>
internal sealed class KqueueBackend : PollerBackend
{
    private const ulong WakeIdent = 0x494F_4D55_58; // "IOMUX": EVFILT_USER idents are ours to choose
    private const int MaxBatch = 1024;             // the native layer converts batches on the stack

    private readonly IKqueueSystem _system;
    private readonly KqueueProfile _os;
    private readonly KernelErrnos _errnos;
    private int _kq;                             // the queue waited on and woken; replaced by a rebuild (CloseKeepsKnotes)
    private int _controlKq;                      // the queue changes go to: _kq, or the new queue while a rebuild fills it
    private bool _sawStale;                      // this wait returned early with nothing (or saw an event nobody owns)
    private int _staleRounds;
    private readonly bool _userWake;
    private readonly WakePipe? _pipe;
    private readonly KEvent[] _receipts = new KEvent[6]; // a delete and an add per filter (libkqueue re-adds)
    private KEvent[] _buffer = [];
    private DescriptorEntry[] _batch = [];       // registrations seen in this batch, merged
    private Bits[] _bits = [];
    // Per table slot (DescriptorEntry.Slot), kqueue's own bookkeeping: the directions the kernel holds a filter
    // for, and where the slot's entry sits in _batch (valid only where _batch holds that entry, so never reset).
    private Interest[] _inKernel = new Interest[16];
    private int[] _batchIndex = new int[16];

    [Flags]
    private enum Bits : byte { In = 1, Out = 2, Pri = 4, ReadEof = 8, WriteEof = 16, Error = 32 }

    /// <summary>The OS's kqueue (or libkqueue on Linux with <c>IOMUX_KQUEUE_LIBRARY</c> set).</summary>
    /// <exception cref="PlatformNotSupportedException">No kqueue here.</exception>
    public KqueueBackend() : this(NativeKqueue.ForThisSystem() ?? throw new PlatformNotSupportedException(UnsupportedReason() ?? "no kqueue"))
    {
    }

    /// <summary>kqueue through <paramref name="system"/>: the real calls, or a model of them.</summary>
    internal KqueueBackend(IKqueueSystem system) : base(WaitLocking.Translate, probe: "kevent(EV_ADD)") // kqueue accepts regular files (always readable): refused first, like every backend
    {
        _system = system;
        _os = system.Profile;
        _errnos = system.Os.Errnos;
        Table.Os = system.Os;
        _kq = _controlKq = system.Create();
        if (_kq < 0)
            throw new PosixException("kqueue", -_kq);
        try
        {
            // EVFILT_USER is probed rather than assumed: OpenBSD before 7.8 and old macOS lack it (EINVAL).
            _userWake = _os.User is { } user && Control([new KEvent { Ident = WakeIdent, Filter = user, Flags = EV_ADD | EV_CLEAR | EV_RECEIPT }]) == 0;
            if (!_userWake)
            {
                // No EVFILT_USER: a self-pipe whose read end is an ordinary filter.
                _pipe = new WakePipe();
                int rc = Control(WakePipeChange());
                if (rc != 0)
                    throw new PosixException("kevent(EV_ADD, wake pipe)", rc);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
        Capabilities = new BackendCapabilities
        {
            Kind = BackendKind.Kqueue,
            Name = "kqueue",
            NativeEdge = true,
            NativeOneshot = false,
            NativeReadHangup = true,
            TimeoutResolution = TimeSpan.FromTicks(1),
            MaxDescriptor = int.MaxValue,
            NativePriority = _os.Except is not null,
        };
    }

    private KEvent[] WakePipeChange() => [new KEvent { Ident = (ulong)_pipe!.ReadEnd, Filter = _os.Read, Flags = EV_ADD | EV_RECEIPT, UData = DescriptorTable.WakeData }];

    /// <summary>The OS table the backend runs on (filters, layout).</summary>
    internal KqueueProfile Profile => _os;

    /// <summary>Why this OS has no kqueue, or null when it has one.</summary>
    public static string? UnsupportedReason() =>
        UnsupportedReason(IoMux.Interop.Platform.Flavor, !string.IsNullOrEmpty(Environment.GetEnvironmentVariable(NativeKqueue.LibraryVariable)));

    /// <summary>Why <paramref name="os"/> has no kqueue, or null. Keyed on the flavor, not on "BSD" in the OS name:
    /// DragonFly's uname says "DragonFly".</summary>
    internal static string? UnsupportedReason(IoMux.Interop.UnixFlavor os, bool libKqueueNamed) => os switch
    {
        IoMux.Interop.UnixFlavor.FreeBSD or IoMux.Interop.UnixFlavor.MacOS or IoMux.Interop.UnixFlavor.NetBSD
            or IoMux.Interop.UnixFlavor.OpenBSD or IoMux.Interop.UnixFlavor.DragonFly => null,
        IoMux.Interop.UnixFlavor.Linux when libKqueueNamed => null,
        _ => $"kqueue exists on FreeBSD, macOS and the other BSDs (on Linux: set {NativeKqueue.LibraryVariable} to libkqueue's shared object)",
    };

    /// <summary>True when wakes use EVFILT_USER rather than a pipe.</summary>
    public bool UsesUserFilterWake => _userWake;

    /// <summary>Submits changes with EV_RECEIPT; returns the first errno a receipt reports, or 0. Receipts of
    /// EV_DELETE that say ENOENT, EBADF or ENOTCAPABLE (nothing to delete) are not errors.</summary>
    private int Control(ReadOnlySpan<KEvent> changes)
    {
        if (changes.IsEmpty)
            return 0;
        var receipts = _receipts.AsSpan(0, changes.Length);
        int n = _system.Kevent(_controlKq, changes, receipts, TimeSpan.Zero);
        if (n < 0)
            return -n;
        for (int i = 0; i < n; i++)
        {
            int errno = (receipts[i].Flags & EV_ERROR) != 0 ? (int)receipts[i].Data : 0;
            bool deleting = (changes[i].Flags & EV_DELETE) != 0;
            // ENOTCAPABLE: FreeBSD's Capsicum sees the blank capability set of a closed number (libevent kqueue.c).
            if (errno != 0 && !(deleting && (errno == _errnos.Enoent || errno == _errnos.Ebadf || errno == _errnos.Enotcapable)))
                return errno;
        }
        return 0;
    }

    /// <summary>Brings the entry's filters in line with its interest: EV_ADD (with the mode's flags) for each
    /// wanted direction, EV_DELETE for each direction added before and no longer wanted, nothing for the rest.
    /// Only filters this OS has are ever named (kevent(2) answers EINVAL for an unknown filter, EV_DELETE
    /// included); Priority on an OS without a filter for it was refused before this point.</summary>
    private int Submit(DescriptorEntry entry, bool delete)
    {
        Span<KEvent> changes = stackalloc KEvent[6];
        int count = 0;
        ushort mode = entry.Mode switch { TriggerMode.Edge => EV_CLEAR, TriggerMode.Oneshot => EV_DISPATCH, _ => 0 };
        var wanted = delete ? Interest.None : entry.Interest;
        bool fresh = _os.ReAddNeedsFreshKnote && mode != EV_CLEAR;
        var inKernel = InKernel(entry);
        Change(ref changes, ref count, entry, inKernel, _os.Read, Interest.Readable, mode, 0, wanted, fresh);
        Change(ref changes, ref count, entry, inKernel, _os.Write, Interest.Writable, mode, 0, wanted, fresh);
        if (_os.Except is { } except)
            Change(ref changes, ref count, entry, inKernel, except, Interest.Priority, mode, _os.ExceptFlags, wanted, fresh);
        int errno = Control(changes[..count]);
        InKernel(entry) = errno == 0 ? wanted & (Interest.Readable | Interest.Writable | Interest.Priority) : InKernel(entry) | wanted;
        return errno;

        static void Change(ref Span<KEvent> changes, ref int count, DescriptorEntry entry, Interest inKernel, short filter, Interest direction, ushort mode, uint fflags, Interest wanted, bool fresh)
        {
            bool add = (wanted & direction) != 0;
            bool exists = (inKernel & direction) != 0;
            if (!add && !exists)
                return; // never added: nothing to delete
            if (add && exists && fresh)
            {
                // libkqueue cannot update a knote (KqueueProfile.ReAddNeedsFreshKnote): a new one replaces it.
                changes[count++] = new KEvent { Ident = (ulong)entry.Descriptor, Filter = filter, Flags = EV_RECEIPT | EV_DELETE };
            }
            changes[count++] = new KEvent
            {
                Ident = (ulong)entry.Descriptor,
                Filter = filter,
                Flags = (ushort)(EV_RECEIPT | (add ? EV_ADD | EV_ENABLE | mode : EV_DELETE)),
                FFlags = add ? fflags : 0,
                UData = entry.KernelData,
            };
        }
    }

    private protected override void CheckInterest(int fd, Interest interest)
    {
        if ((interest & Interest.Priority) != 0 && _os.Except is null)
            throw new NotSupportedException($"fd {fd}: Interest.Priority needs a kqueue filter for out-of-band data, and {_os.Name} has none (no EVFILT_EXCEPT); see docs/SEMANTICS.md, row P1.");
    }

    /// <summary>The directions the kernel holds a filter for, of the entry in this table slot.</summary>
    private ref Interest InKernel(DescriptorEntry entry)
    {
        if (entry.Slot >= _inKernel.Length)
        {
            Array.Resize(ref _inKernel, Math.Max(entry.Slot + 1, _inKernel.Length * 2));
            Array.Resize(ref _batchIndex, _inKernel.Length);
        }
        return ref _inKernel[entry.Slot];
    }

    private protected override void Watch(DescriptorEntry entry)
    {
        InKernel(entry) = Interest.None; // a new entry (its slot may have held another)
        int errno = Submit(entry, delete: false);
        if (errno != 0)
        {
            Submit(entry, delete: true);
            throw new PosixException("kevent(EV_ADD)", errno, $"fd {entry.Descriptor}");
        }
    }

    private protected override void Rewatch(DescriptorEntry entry, ulong token, Interest interest, TriggerMode mode)
    {
        // EV_ADD of an existing knote updates fflags and udata and re-enables it, but keeps the EV_CLEAR or
        // EV_DISPATCH it was created with (FreeBSD kqueue_register copies those at creation only): a new
        // mode needs new knotes.
        if (mode != entry.Mode)
            Submit(entry, delete: true);
        Table.Update(entry, token, interest, mode);
        int errno = Submit(entry, delete: false);
        if (errno != 0)
            throw new PosixException("kevent(EV_ADD)", errno, $"fd {entry.Descriptor}");
    }

    /// <summary>close() removes a descriptor's knotes by itself; deleting after close reports EBADF or ENOENT, which
    /// Control does not count as errors. A closed registration found on the wait path: close(2) removed the knotes
    /// already (kqueue(2): "calling close() on a file descriptor will remove any kevents that reference the
    /// descriptor"), unless the close is still deferred by another reference; delete what may be left.</summary>
    private protected override void Unwatch(DescriptorEntry entry, Removal why)
    {
        int errno = Submit(entry, delete: true);
        if (errno != 0 && why != Removal.Closed)
            throw new PosixException("kevent(EV_DELETE)", errno, $"fd {entry.Descriptor}");
    }

    private protected override string KernelCallName => "kevent";

    /// <summary>Requested after a wait that saw a stale event, on a kqueue whose knotes outlive a close. A kernel kqueue
    /// removes a descriptor's knotes at close(2). A user-space kqueue (libkqueue) cannot see the close: deleting the
    /// knote of a descriptor closed before it was deregistered frees the knote, but its epoll entry (keyed by the
    /// closed number, kept by a dup) cannot be removed; it keeps firing, libkqueue drops the event and kevent returns
    /// nothing at once: every wait would spin. Two such rounds in a row: only a new queue drops it (as epoll's
    /// rebuild). A rebuild re-adds the live registrations, so an edge registration may see its current readiness
    /// once more (as after epoll's).</summary>
    private protected override void PrepareWait()
    {
        PrepareRequested = false;
        if (++_staleRounds >= 2)
            RebuildQueue();
    }

    /// <summary>A stale event was seen in this wait: count it towards a rebuild where knotes outlive a close.</summary>
    private void SawStale()
    {
        _sawStale = true;
        if (_os.CloseKeepsKnotes)
            PrepareRequested = true;
    }

    /// <summary>Replaces the queue with a new one holding the wake and the live registrations only. The new queue is
    /// filled before anyone can name it (changes go to <c>_controlKq</c>); then it is published, the wakers that may
    /// still hold the old number are waited out, and the old queue is closed with whatever stale entries it held.</summary>
    private void RebuildQueue()
    {
        int fresh = _system.Create();
        if (fresh < 0)
            return; // EMFILE: try again at the next stale round
        int old = _kq;
        _controlKq = fresh;
        int rc = _userWake
            ? Control([new KEvent { Ident = WakeIdent, Filter = _os.User!.Value, Flags = EV_ADD | EV_CLEAR | EV_RECEIPT }])
            : Control(WakePipeChange());
        var carried = new List<(DescriptorEntry Entry, Interest InKernel)>();
        foreach (var entry in Table.Live)
        {
            if (rc != 0)
                break;
            if (entry.Closed || entry.Interest == Interest.None)
                continue;
            carried.Add((entry, InKernel(entry)));
            InKernel(entry) = Interest.None; // nothing of it is in the new queue yet
            int errno = Submit(entry, delete: false);
            if (errno == _errnos.Ebadf)
            {
                // A raw descriptor closed while registered (the misuse that left the stale knote, or another):
                // it cannot be watched any more; never report it again, as every backend does.
                StopWatchingClosed(entry);
                continue;
            }
            rc = errno;
            if (rc == 0 && entry.Mode == TriggerMode.Oneshot && entry.Armed == Interest.None)
                DisableSiblings(entry); // a oneshot that reported stays disarmed until it is re-armed
        }
        if (rc != 0)
        {
            // Could not carry everything over: keep the old queue (nothing lost) and try again at the next stale round.
            foreach (var (entry, inKernel) in carried)
                InKernel(entry) = inKernel;
            _controlKq = old;
            _system.Close(fresh);
            return;
        }
        Volatile.Write(ref _kq, fresh);
        WaitForWakers(); // a waker that read the old number before the write has written by now
        _system.Close(old);
        _staleRounds = 0;
        Counters.OnKernelSetRebuilt();
        // A wake requested meanwhile is not lost: the waiter is not asleep (this runs before its wait), so the wake
        // gate holds the request and the coming wait does not sleep.
    }

    private protected override int KernelWait(int capacity, TimeSpan slice, out int errno)
    {
        if (!_sawStale)
            _staleRounds = 0; // the stale rounds counted by PrepareWait must follow each other
        _sawStale = false;
        capacity = Math.Min(capacity, MaxBatch);
        if (_buffer.Length < capacity)
        {
            _buffer = new KEvent[capacity];
            _batch = new DescriptorEntry[capacity];
            _bits = new Bits[capacity];
        }
        long start = _os.CloseKeepsKnotes ? Stopwatch.GetTimestamp() : 0;
        int n = _system.Kevent(_kq, [], _buffer.AsSpan(0, capacity), slice == Timeout.InfiniteTimeSpan ? null : slice);
        errno = n < 0 ? -n : 0;
        // libkqueue drops the events of knotes it deleted but whose epoll entry outlived their closed number, and
        // returns nothing at once (mheily/libkqueue src/linux/platform.c linux_kevent_copyout skips stale udata;
        // src/common/kevent.c returns the 0 events): a wait that ends early with nothing is that stale entry firing.
        if (n == 0 && _os.CloseKeepsKnotes && slice > TimeSpan.Zero
            && (slice == Timeout.InfiniteTimeSpan || Stopwatch.GetElapsedTime(start) < slice / 2))
            SawStale();
        return Math.Max(n, 0);
    }

    private protected override int Translate(int count, Span<PollEvent> events)
    {
        int seen = 0;
        for (int i = 0; i < count; i++)
        {
            ref readonly var e = ref _buffer[i];
            if (e.UData == DescriptorTable.WakeData || _userWake && e.Filter == _os.User)
            {
                _pipe?.Drain();
                continue;
            }
            if ((e.Flags & EV_ERROR) != 0)
                continue; // a sibling disable for a descriptor closed meanwhile: nothing to tell
            var entry = Table.Resolve(e.UData);
            if (entry is null)
            {
                SawStale(); // deleted during the wait, or (CloseKeepsKnotes) a knote that outlived its number
                continue;
            }
            if (entry.Closed || entry.Armed == Interest.None)
                continue; // replaced, or a oneshot that already reported
            if (HandleClosed(entry))
            {
                StopWatchingClosed(entry);
                continue;
            }
            InKernel(entry); // _batchIndex covers the slot
            int k = _batchIndex[entry.Slot];
            if (k >= seen || !ReferenceEquals(_batch[k], entry))
                k = -1;
            if (k < 0)
            {
                k = seen++;
                _batch[k] = entry;
                _bits[k] = 0;
                _batchIndex[entry.Slot] = k;
            }
            bool eof = (e.Flags & EV_EOF) != 0;
            if (e.Filter == _os.Read) _bits[k] |= Bits.In | (eof ? Bits.ReadEof : 0);
            else if (e.Filter == _os.Write) _bits[k] |= Bits.Out | (eof ? Bits.WriteEof : 0);
            else if (e.Filter == _os.Except) _bits[k] |= Bits.Pri;
            if (eof && e.FFlags != 0)
                _bits[k] |= Bits.Error; // EV_EOF's fflags carries the socket error (ECONNRESET ...)
        }
        int written = 0;
        for (int k = 0; k < seen; k++)
        {
            var entry = _batch[k];
            var b = _bits[k];
            bool readEof = (b & Bits.ReadEof) != 0;
            // A pipe's read side at EOF has lost its writer for good; a socket is hung up when both of its
            // directions are. The write filter's EOF alone is this side's own shutdown(SHUT_WR).
            bool hangup = entry.Kind == DescriptorKind.Fifo ? readEof : readEof && (b & Bits.WriteEof) != 0;
            var readiness = ReadinessRules.Normalize(entry.Armed, (b & Bits.In) != 0, (b & Bits.Out) != 0,
                (b & Bits.Pri) != 0, (b & Bits.Error) != 0, hangup, readEof);
            if (readiness == Readiness.None)
                continue;
            events[written++] = new PollEvent(entry.Token, readiness);
            if (entry.Mode == TriggerMode.Oneshot)
            {
                DisableSiblings(entry);
                entry.DisarmReported(readiness); // edge stays armed: EV_CLEAR is native
            }
        }
        return written;
    }

    /// <summary>A oneshot registration reported: disable all its filters now (the one that fired is disabled
    /// by EV_DISPATCH already; the others would fire later). Errors do not matter: a filter that is gone
    /// cannot fire either.</summary>
    private void DisableSiblings(DescriptorEntry entry)
    {
        Span<KEvent> changes = stackalloc KEvent[3];
        int count = 0;
        var inKernel = InKernel(entry);
        if ((inKernel & Interest.Readable) != 0) changes[count++] = Disable(entry, _os.Read);
        if ((inKernel & Interest.Writable) != 0) changes[count++] = Disable(entry, _os.Write);
        if ((inKernel & Interest.Priority) != 0 && _os.Except is { } except) changes[count++] = Disable(entry, except);
        if (count > 0)
            _system.Kevent(_controlKq, changes[..count], [], TimeSpan.Zero);

        static KEvent Disable(DescriptorEntry entry, short filter) =>
            new() { Ident = (ulong)entry.Descriptor, Filter = filter, Flags = EV_DISABLE, UData = entry.KernelData };
    }

    private protected override void WriteWake()
    {
        if (_userWake)
            _system.Kevent(Volatile.Read(ref _kq), [new KEvent { Ident = WakeIdent, Filter = _os.User!.Value, FFlags = NOTE_TRIGGER }], [], TimeSpan.Zero);
        else
            _pipe?.Write();
    }

    private protected override void CloseKernel()
    {
        _system.Close(_kq);
        _pipe?.Dispose();
    }
}
