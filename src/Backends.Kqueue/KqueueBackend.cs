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
public sealed class KqueueBackend : IPollerBackend
{
    private const ulong WakeIdent = 0x494F_4D55_58; // "IOMUX": EVFILT_USER idents are ours to choose
    private const int MaxBatch = 1024;             // the native layer converts batches on the stack

    private readonly IKqueueSystem _system;
    private readonly KqueueFilters _filters;
    private readonly int _kq;
    private readonly object _gate = new();
    private readonly DescriptorTable _table = new();
    private readonly BackendCounters _counters = new();
    private readonly WakeGate _wakeGate = new();
    private readonly CloseGuard _closeGuard = new();
    private readonly bool _userWake;
    private readonly int _pipeRead = -1, _pipeWrite = -1;
    private readonly KEvent[] _receipts = new KEvent[3];
    private KEvent[] _buffer = [];
    private DescriptorEntry[] _batch = [];       // registrations seen in this batch, merged
    private Bits[] _bits = [];
    private bool _disposed;

    [Flags]
    private enum Bits : byte { In = 1, Out = 2, Pri = 4, ReadEof = 8, WriteEof = 16, Error = 32 }

    /// <summary>The OS's kqueue (or libkqueue on Linux with <c>IOMUX_KQUEUE_LIBRARY</c> set).</summary>
    /// <exception cref="PlatformNotSupportedException">No kqueue here.</exception>
    public KqueueBackend() : this(NativeKqueue.ForThisSystem() ?? throw new PlatformNotSupportedException(UnsupportedReason() ?? "no kqueue"))
    {
    }

    /// <summary>kqueue through <paramref name="system"/>: the real calls, or a model of them.</summary>
    public KqueueBackend(IKqueueSystem system)
    {
        _system = system;
        _filters = system.Filters;
        _kq = system.Create();
        if (_kq < 0)
            throw new PosixException("kqueue", -_kq);
        try
        {
            _userWake = _filters.User != 0 && Control([new KEvent { Ident = WakeIdent, Filter = _filters.User, Flags = EV_ADD | EV_CLEAR | EV_RECEIPT }]) == 0;
            if (!_userWake)
            {
                // No EVFILT_USER (older macOS, OpenBSD): a self-pipe whose read end is an ordinary filter.
                LibC.CreateNonBlockingPipe(out _pipeRead, out _pipeWrite);
                int rc = Control([new KEvent { Ident = (ulong)_pipeRead, Filter = _filters.Read, Flags = EV_ADD | EV_RECEIPT, UData = DescriptorTable.WakeData }]);
                if (rc != 0)
                    throw new PosixException("kevent(EV_ADD, wake pipe)", rc);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
        Capabilities = new BackendCapabilities(BackendKind.Kqueue, "kqueue",
            NativeEdge: true, NativeOneshot: false, NativeReadHangup: true,
            TimeoutResolution: TimeSpan.FromTicks(1), MaxDescriptor: int.MaxValue);
    }

    /// <summary>Why this OS has no kqueue, or null when it has one.</summary>
    public static string? UnsupportedReason() =>
        OperatingSystem.IsFreeBSD() || OperatingSystem.IsMacOS() || RuntimeInformation.OSDescription.Contains("BSD", StringComparison.OrdinalIgnoreCase) ? null
        : OperatingSystem.IsLinux() && !string.IsNullOrEmpty(Environment.GetEnvironmentVariable(NativeKqueue.LibraryVariable)) ? null
        : $"kqueue exists on FreeBSD, macOS and the other BSDs (on Linux: set {NativeKqueue.LibraryVariable} to libkqueue's shared object)";

    /// <summary>True when wakes use EVFILT_USER rather than a pipe.</summary>
    public bool UsesUserFilterWake => _userWake;

    /// <inheritdoc />
    public BackendCapabilities Capabilities { get; }

    /// <inheritdoc />
    public BackendCounters Counters => _counters;

    /// <summary>Submits changes with EV_RECEIPT; returns the first errno a receipt reports, or 0. Receipts of
    /// EV_DELETE that say ENOENT or EBADF (nothing to delete) are not errors.</summary>
    private int Control(ReadOnlySpan<KEvent> changes)
    {
        var receipts = _receipts.AsSpan(0, changes.Length);
        int n = _system.Kevent(_kq, changes, receipts, TimeSpan.Zero);
        if (n < 0)
            return -n;
        for (int i = 0; i < n; i++)
        {
            int errno = (receipts[i].Flags & EV_ERROR) != 0 ? (int)receipts[i].Data : 0;
            bool deleting = (changes[i].Flags & EV_DELETE) != 0;
            if (errno != 0 && !(deleting && (errno == Errno.ENOENT || errno == Errno.EBADF)))
                return errno;
        }
        return 0;
    }

    /// <summary>The filters a registration uses: one change per filter, adding the wanted ones (with the
    /// mode's flags) and deleting the others.</summary>
    private int Submit(DescriptorEntry entry, bool delete)
    {
        Span<KEvent> changes = stackalloc KEvent[3];
        int count = 0;
        ushort mode = entry.Mode switch { TriggerMode.Edge => EV_CLEAR, TriggerMode.Oneshot => EV_DISPATCH, _ => 0 };
        Add(ref changes, ref count, entry, _filters.Read, Interest.Readable, mode, 0, delete);
        Add(ref changes, ref count, entry, _filters.Write, Interest.Writable, mode, 0, delete);
        if (_filters.Except != 0)
            Add(ref changes, ref count, entry, _filters.Except, Interest.Priority, mode, NOTE_OOB, delete);
        return Control(changes[..count]);

        static void Add(ref Span<KEvent> changes, ref int count, DescriptorEntry entry, short filter, Interest direction, ushort mode, uint fflags, bool delete)
        {
            bool wanted = !delete && (entry.Interest & direction) != 0;
            changes[count++] = new KEvent
            {
                Ident = (ulong)entry.Descriptor,
                Filter = filter,
                Flags = (ushort)(EV_RECEIPT | (wanted ? EV_ADD | EV_ENABLE | mode : EV_DELETE)),
                FFlags = wanted ? fflags : 0,
                UData = entry.KernelData,
            };
        }
    }

    /// <inheritdoc />
    public void Add(int fd, ulong token, Interest interest, TriggerMode mode)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fd);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            // kqueue accepts regular files (always readable): refused first, like every backend.
            var entry = _table.AddChecked(fd, token, interest, mode, "kevent(EV_ADD)");
            int errno = Submit(entry, delete: false);
            if (errno != 0)
            {
                _table.Remove(entry);
                Submit(entry, delete: true);
                throw new PosixException("kevent(EV_ADD)", errno, $"fd {fd}");
            }
        }
    }

    /// <inheritdoc />
    public void Modify(int fd, ulong token, Interest interest, TriggerMode mode)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var entry = _table.Get(fd);
            _table.Update(entry, token, interest, mode);
            int errno = Submit(entry, delete: false); // EV_ADD of an existing knote updates and re-enables it
            if (errno != 0)
                throw new PosixException("kevent(EV_ADD)", errno, $"fd {fd}");
        }
    }

    /// <inheritdoc />
    public void Delete(int fd)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var entry = _table.Get(fd);
            _table.Remove(entry);
            // close() removes a descriptor's knotes by itself; deleting after close reports EBADF or
            // ENOENT, which Control does not count as errors.
            int errno = Submit(entry, delete: true);
            if (errno != 0)
                throw new PosixException("kevent(EV_DELETE)", errno, $"fd {fd}");
        }
    }

    /// <inheritdoc />
    public void Rearm(int fd, Interest directions)
    {
        // EV_CLEAR is native edge mode: new readiness re-arms it by itself.
    }

    /// <inheritdoc />
    public int Wait(Span<PollEvent> events, TimeSpan timeout)
    {
        var deadline = WaitDeadline.Start(timeout);
        int capacity = Math.Min(events.Length, MaxBatch);
        if (_buffer.Length < capacity)
        {
            _buffer = new KEvent[capacity];
            _batch = new DescriptorEntry[capacity];
            _bits = new Bits[capacity];
        }
        while (true)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var slice = _wakeGate.BeginWait(deadline);
            _counters.OnKernelWait();
            int n = _system.Kevent(_kq, [], _buffer.AsSpan(0, capacity), slice == Timeout.InfiniteTimeSpan ? null : slice);
            bool woken = _wakeGate.EndWait(deadline);
            if (n < 0)
            {
                if (-n != Errno.EINTR)
                    throw new PosixException("kevent", -n);
                _counters.OnInterrupted();
                if (woken)
                    return 0;
                continue;
            }
            int written;
            lock (_gate)
                written = Collect(n, events);
            if (written > 0 || woken || deadline.HasPassed)
                return written;
        }
    }

    private int Collect(int count, Span<PollEvent> events)
    {
        int seen = 0;
        for (int i = 0; i < count; i++)
        {
            ref readonly var e = ref _buffer[i];
            if (e.Filter == _filters.User && _filters.User != 0 || e.UData == DescriptorTable.WakeData)
            {
                if (!_userWake)
                    DrainPipe();
                continue;
            }
            if ((e.Flags & EV_ERROR) != 0)
                continue; // a sibling disable for a descriptor closed meanwhile: nothing to tell
            var entry = _table.Resolve(e.UData);
            if (entry is null || entry.Armed == Interest.None)
                continue; // gone, replaced, or a oneshot that already reported
            int k = entry.Index >= 0 && entry.Index < seen && ReferenceEquals(_batch[entry.Index], entry) ? entry.Index : -1;
            if (k < 0)
            {
                k = seen++;
                _batch[k] = entry;
                _bits[k] = 0;
                entry.Index = k;
            }
            bool eof = (e.Flags & EV_EOF) != 0;
            if (e.Filter == _filters.Read) _bits[k] |= Bits.In | (eof ? Bits.ReadEof : 0);
            else if (e.Filter == _filters.Write) _bits[k] |= Bits.Out | (eof ? Bits.WriteEof : 0);
            else if (e.Filter == _filters.Except) _bits[k] |= Bits.Pri;
            if (eof && e.FFlags != 0)
                _bits[k] |= Bits.Error; // EV_EOF's fflags carries the socket error (ECONNRESET ...)
        }
        int written = 0;
        for (int k = 0; k < seen; k++)
        {
            var entry = _batch[k];
            entry.Index = -1;
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
        if ((entry.Interest & Interest.Readable) != 0) changes[count++] = Disable(entry, _filters.Read);
        if ((entry.Interest & Interest.Writable) != 0) changes[count++] = Disable(entry, _filters.Write);
        if ((entry.Interest & Interest.Priority) != 0 && _filters.Except != 0) changes[count++] = Disable(entry, _filters.Except);
        _system.Kevent(_kq, changes[..count], [], TimeSpan.Zero);

        static KEvent Disable(DescriptorEntry entry, short filter) =>
            new() { Ident = (ulong)entry.Descriptor, Filter = filter, Flags = EV_DISABLE, UData = entry.KernelData };
    }

    private unsafe void DrainPipe()
    {
        byte* buffer = stackalloc byte[64];
        while (LibC.read(_pipeRead, buffer, 64) == 64)
        {
        }
    }

    /// <inheritdoc />
    public unsafe void Wake()
    {
        if (!_wakeGate.Request() || !_closeGuard.TryEnter())
            return;
        try
        {
            if (_userWake)
                _system.Kevent(_kq, [new KEvent { Ident = WakeIdent, Filter = _filters.User, FFlags = NOTE_TRIGGER }], [], TimeSpan.Zero);
            else
            {
                byte one = 1;
                LibC.write(_pipeWrite, &one, 1);
            }
            _counters.OnWakeWrite();
        }
        finally
        {
            _closeGuard.Exit();
        }
    }

    /// <summary>Closes the queue (and the wake pipe); registered descriptors stay open (they are the caller's).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
                return;
            _disposed = true;
        }
        if (!_closeGuard.Close())
            return;
        _system.Close(_kq);
        LibC.CloseQuietly(_pipeRead);
        LibC.CloseQuietly(_pipeWrite);
    }
}
