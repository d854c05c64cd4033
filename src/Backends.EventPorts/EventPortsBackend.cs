using IoMux.Interop;

namespace IoMux.Backends.EventPorts;

/// <summary>
/// illumos and Solaris event ports. A port dissociates a descriptor after delivering its event, so the
/// modes are built on that one-shot primitive, as libuv's and libevent's ports backends do:
/// <list type="bullet">
/// <item>oneshot is native: the delivered descriptor simply stays dissociated until Modify;</item>
/// <item>level is emulated by re-associating, in one batch before the next port_getn, every descriptor
/// delivered by the previous one (a level condition that still holds fires again at once);</item>
/// <item>edge is emulated by re-associating only the directions that were not delivered; a delivered
/// direction comes back when the consumer hits would-block (Rearm), so nothing busy-loops.</item>
/// </list>
/// Each association carries slot and generation in portev_user (as mio does), so an event from an
/// association that was removed or replaced is recognised and dropped. port_getn can fail with ETIME or
/// EINTR and still have delivered events: the count in nget is what matters, not the return value.
/// </summary>
public sealed class EventPortsBackend : IPollerBackend
{
    private readonly IEventPortSystem _system;
    private readonly PortPollBits _bits;
    private readonly int _port;
    private readonly object _gate = new();
    private readonly DescriptorTable _table = new();
    private readonly BackendCounters _counters = new();
    private readonly WakeGate _wakeGate = new();
    private readonly CloseGuard _closeGuard = new();
    private readonly bool _nativeReadHangup;
    private DescriptorEntry[] _pending = new DescriptorEntry[16]; // delivered last wait, to re-associate
    private int _pendingCount;
    private PortEvent[] _buffer = [];
    private bool _disposed;

    /// <summary>Event ports of this OS.</summary>
    /// <exception cref="PlatformNotSupportedException">Not illumos or Solaris.</exception>
    public EventPortsBackend() : this(Platform.IsIllumos ? new NativeEventPorts() : throw new PlatformNotSupportedException("event ports exist on illumos and Solaris only"))
    {
    }

    /// <summary>Event ports through <paramref name="system"/>: the real calls, or a model of them.</summary>
    public EventPortsBackend(IEventPortSystem system)
    {
        _system = system;
        _bits = system.Bits;
        _nativeReadHangup = _bits.RdHup != 0;
        _port = system.Create();
        if (_port < 0)
            throw new PosixException("port_create", -_port);
        Capabilities = new BackendCapabilities(BackendKind.EventPorts, "ports",
            NativeEdge: false, NativeOneshot: true, NativeReadHangup: _nativeReadHangup,
            TimeoutResolution: TimeSpan.FromTicks(1), MaxDescriptor: int.MaxValue);
    }

    /// <inheritdoc />
    public BackendCapabilities Capabilities { get; }

    /// <inheritdoc />
    public BackendCounters Counters => _counters;

    /// <inheritdoc />
    public void Add(int fd, ulong token, Interest interest, TriggerMode mode)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fd);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var entry = _table.AddChecked(fd, token, interest, mode, "port_associate");
            try
            {
                Associate(entry);
            }
            catch
            {
                _table.Remove(entry);
                throw;
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
            Associate(entry); // re-associating replaces the events and re-arms a oneshot
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
            // ENOENT: not associated right now (delivered, or oneshot); EBADF: closed already.
            int rc = _system.Dissociate(_port, fd);
            if (rc < 0 && -rc != Errno.ENOENT && -rc != Errno.EBADF && -rc != Errno.EBADFD)
                throw new PosixException("port_dissociate", -rc, $"fd {fd}");
        }
    }

    /// <inheritdoc />
    public void Rearm(int fd, Interest directions)
    {
        lock (_gate)
        {
            // From any thread: ports accept associations while another thread waits.
            if (!_disposed && _table.TryRearm(fd, directions) is { } entry)
                Associate(entry);
        }
    }

    private int KernelEvents(Interest armed)
    {
        int events = 0;
        if ((armed & Interest.Readable) != 0) events |= _bits.In | _bits.RdHup;
        if ((armed & Interest.Writable) != 0) events |= _bits.Out;
        if ((armed & Interest.Priority) != 0) events |= _bits.Pri;
        return events;
    }

    private void Associate(DescriptorEntry entry)
    {
        if (entry.Armed == Interest.None)
        {
            _system.Dissociate(_port, entry.Descriptor); // ENOENT is fine: nothing to stop
            return;
        }
        int rc = _system.Associate(_port, entry.Descriptor, KernelEvents(entry.Armed), entry.KernelData);
        if (rc < 0)
            throw new PosixException("port_associate", -rc, $"fd {entry.Descriptor}");
    }

    /// <inheritdoc />
    public int Wait(Span<PollEvent> events, TimeSpan timeout)
    {
        var deadline = WaitDeadline.Start(timeout);
        int capacity = Math.Min(events.Length, 1 << 16);
        if (_buffer.Length < capacity)
            _buffer = new PortEvent[capacity];
        while (true)
        {
            lock (_gate)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                ReassociatePending();
            }
            var slice = _wakeGate.BeginWait(deadline);
            uint nget = 1;
            _counters.OnKernelWait();
            int rc = _system.GetN(_port, _buffer.AsSpan(0, capacity), ref nget, slice == Timeout.InfiniteTimeSpan ? null : slice);
            bool woken = _wakeGate.EndWait(deadline);
            int errno = -rc;
            if (rc < 0 && errno != Errno.ETIME && errno != Errno.EINTR)
                throw new PosixException("port_getn", errno);
            if (errno == Errno.EINTR)
                _counters.OnInterrupted();
            // ETIME and EINTR may come with events: nget says how many were retrieved (T3).
            int written;
            lock (_gate)
                written = Collect(Math.Min((int)nget, capacity), events);
            if (written > 0 || woken || deadline.HasPassed)
                return written;
        }
    }

    private void ReassociatePending()
    {
        for (int i = 0; i < _pendingCount; i++)
        {
            var entry = _pending[i];
            if (entry.Removed || entry.Armed == Interest.None)
                continue;
            int rc = _system.Associate(_port, entry.Descriptor, KernelEvents(entry.Armed), entry.KernelData);
            if (rc == -Errno.EBADF)
                entry.Armed = Interest.None; // closed without deregistering: stop watching, as epoll would
            else if (rc < 0)
                throw new PosixException("port_associate", -rc, $"fd {entry.Descriptor}");
        }
        _pendingCount = 0;
    }

    private void Pend(DescriptorEntry entry)
    {
        if (_pendingCount == _pending.Length)
            Array.Resize(ref _pending, _pending.Length * 2);
        _pending[_pendingCount++] = entry;
    }

    private int Collect(int count, Span<PollEvent> events)
    {
        int written = 0;
        for (int i = 0; i < count; i++)
        {
            ref readonly var e = ref _buffer[i];
            if (e.Source != PortSource.Fd)
                continue; // PORT_SOURCE_USER: our wake, or a stale one from a raced write
            var entry = _table.Resolve(e.User);
            if (entry is null)
                continue; // the association of a registration that is gone or was replaced
            int m = e.Events;
            if ((m & _bits.Nval) != 0)
            {
                entry.Armed = Interest.None; // closed without deregistering: stop watching, as epoll would
                continue;
            }
            bool input = (m & _bits.In) != 0, hangup = (m & _bits.Hup) != 0;
            bool readHangup = _nativeReadHangup && (m & _bits.RdHup) != 0;
            var armed = entry.Armed;
            if (!_nativeReadHangup)
                HangupDerivation.DeriveIfReadable(entry, armed, input, ref hangup, ref readHangup);
            var readiness = ReadinessRules.Normalize(armed, input, (m & _bits.Out) != 0, (m & _bits.Pri) != 0,
                (m & _bits.Err) != 0, hangup, readHangup);
            // The port dissociated the descriptor with this event. Oneshot leaves it so (native); level watches
            // it again before the next port_getn; edge re-associates only the directions not delivered.
            if (readiness != Readiness.None)
            {
                events[written++] = new PollEvent(entry.Token, readiness);
                entry.DisarmReported(readiness);
            }
            if (entry.Armed != Interest.None)
                Pend(entry);
        }
        return written;
    }

    /// <inheritdoc />
    public void Wake()
    {
        if (!_wakeGate.Request() || !_closeGuard.TryEnter())
            return;
        try
        {
            _system.Send(_port, 0, DescriptorTable.WakeData);
            _counters.OnWakeWrite();
        }
        finally
        {
            _closeGuard.Exit();
        }
    }

    /// <summary>Closes the port; registered descriptors stay open (they are the caller's).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
                return;
            _disposed = true;
        }
        if (_closeGuard.Close())
            _system.Close(_port);
    }
}
