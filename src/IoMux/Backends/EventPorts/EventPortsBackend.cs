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
/// direction comes back when the consumer hits would-block (NotifyWouldBlock), so nothing busy-loops.</item>
/// </list>
/// Each association carries slot and generation in portev_user (as mio does), so an event from an
/// association that was removed or replaced is recognised and dropped. port_getn can fail with ETIME or
/// EINTR and still have delivered events: the count in nget is what matters, not the return value.
/// </summary>
internal sealed class EventPortsBackend : PollerBackend
{
    private readonly IEventPortSystem _system;
    private readonly PortPollBits _bits;
    private readonly KernelErrnos _errnos;
    private readonly int _port;
    private readonly bool _nativeReadHangup;
    private DescriptorEntry[] _pending = new DescriptorEntry[16]; // delivered last wait, to re-associate
    private int _pendingCount;
    private PortEvent[] _buffer = [];

    /// <summary>Event ports of this OS.</summary>
    /// <exception cref="PlatformNotSupportedException">Not illumos or Solaris.</exception>
    public EventPortsBackend() : this(Platform.IsIllumos ? new NativeEventPorts() : throw new PlatformNotSupportedException("event ports exist on illumos and Solaris only"))
    {
    }

    /// <summary>Event ports through <paramref name="system"/>: the real calls, or a model of them.</summary>
    internal EventPortsBackend(IEventPortSystem system) : base(WaitLocking.Translate, probe: "port_associate")
    {
        PrepareRequested = true; // every wait re-associates what the previous one delivered
        _system = system;
        _bits = system.Bits;
        _errnos = system.Os.Errnos;
        Table.Os = system.Os;
        _nativeReadHangup = _bits.RdHup != 0;
        _port = system.Create();
        if (_port < 0)
            throw new PosixException("port_create", -_port);
        Capabilities = new BackendCapabilities
        {
            Kind = BackendKind.EventPorts,
            Name = "ports",
            NativeEdge = false,
            NativeOneshot = true,
            NativeReadHangup = _nativeReadHangup,
            TimeoutResolution = TimeSpan.FromTicks(1),
            MaxDescriptor = int.MaxValue,
            NativePriority = true,
        };
    }

    private protected override void Watch(DescriptorEntry entry) => Associate(entry);

    private protected override void Rewatch(DescriptorEntry entry, ulong token, Interest interest, TriggerMode mode)
    {
        Table.Update(entry, token, interest, mode);
        Associate(entry); // re-associating replaces the events and re-arms a oneshot
    }

    /// <summary>From any thread: ports accept associations while another thread waits.</summary>
    private protected override void Rewatch(DescriptorEntry entry) => Associate(entry);

    /// <summary>A closed entry found on the wait path is not associated (its event dissociated it, or it was never
    /// re-associated): nothing to do. Otherwise dissociate; ENOENT: not associated right now (delivered, or oneshot);
    /// EBADF: closed already.</summary>
    private protected override void Unwatch(DescriptorEntry entry, Removal why)
    {
        if (why == Removal.Closed)
            return;
        int errno = _system.Dissociate(_port, entry.Descriptor);
        if (errno != 0 && errno != _errnos.Enoent && errno != _errnos.Ebadf && errno != _errnos.Ebadfd)
            throw new PosixException("port_dissociate", errno, $"fd {entry.Descriptor}");
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
        int errno = _system.Associate(_port, entry.Descriptor, KernelEvents(entry.Armed), entry.KernelData);
        if (errno != 0)
            throw new PosixException("port_associate", errno, $"fd {entry.Descriptor}");
    }

    private protected override string KernelCallName => "port_getn";

    private protected override void PrepareWait() => ReassociatePending();

    private protected override int KernelWait(int capacity, TimeSpan slice, out int errno)
    {
        capacity = Math.Min(capacity, 1 << 16);
        if (_buffer.Length < capacity)
            _buffer = new PortEvent[capacity];
        // port_getn leaves nget untouched when it fails before retrieving anything (EINTR): mark the first slot
        // unfilled so that such a slot is skipped by its source, as libuv's sunos.c does.
        _buffer[0].Source = 0;
        uint nget = 1;
        errno = _system.GetN(_port, _buffer.AsSpan(0, capacity), ref nget, slice == Timeout.InfiniteTimeSpan ? null : slice);
        // ETIME (the timeout passed) is not an error, and may come with events: nget says how many were retrieved
        // (T3; port_getn(3C), and libuv's sunos.c and libev's ev_port.c rely on the same).
        if (errno == _errnos.Etime)
            errno = 0;
        return Math.Min((int)nget, capacity);
    }


    private void ReassociatePending()
    {
        for (int i = 0; i < _pendingCount; i++)
        {
            var entry = _pending[i];
            if (entry.Removed || entry.Closed || entry.Armed == Interest.None)
                continue;
            if (HandleClosed(entry))
            {
                StopWatchingClosed(entry); // the number may name another file by now: never associate it again
                continue;
            }
            int errno = _system.Associate(_port, entry.Descriptor, KernelEvents(entry.Armed), entry.KernelData);
            // Closed without deregistering: stop watching, as epoll would. illumos answers EBADFD for a closed
            // descriptor (port_associate(3C)).
            if (errno == _errnos.Ebadf || errno == _errnos.Ebadfd)
                StopWatchingClosed(entry);
            else if (errno != 0)
                throw new PosixException("port_associate", errno, $"fd {entry.Descriptor}");
        }
        _pendingCount = 0;
    }

    private void Pend(DescriptorEntry entry)
    {
        if (_pendingCount == _pending.Length)
            Array.Resize(ref _pending, _pending.Length * 2);
        _pending[_pendingCount++] = entry;
    }

    private protected override int Translate(int count, Span<PollEvent> events)
    {
        int written = 0;
        for (int i = 0; i < count; i++)
        {
            ref readonly var e = ref _buffer[i];
            if (e.Source != PortSource.Fd)
                continue; // PORT_SOURCE_USER: our wake, or a stale one from a raced write
            var entry = Table.Resolve(e.User);
            if (entry is null || entry.Closed)
                continue; // the association of a registration that is gone or was replaced
            int m = e.Events;
            if ((m & _bits.Nval) != 0 || HandleClosed(entry))
            {
                StopWatchingClosed(entry); // closed without deregistering: stop watching, as epoll would
                continue;
            }
            bool input = (m & _bits.In) != 0, output = (m & _bits.Out) != 0, error = (m & _bits.Err) != 0;
            bool hangup = (m & _bits.Hup) != 0;
            bool readHangup = _nativeReadHangup && (m & _bits.RdHup) != 0;
            var armed = entry.Armed;
            if (!_nativeReadHangup)
                HangupDerivation.DeriveIfReadable(Table.Os, entry, armed, input, ref hangup, ref readHangup);
            if (HangupDerivation.IsLoneHangup(input, output, error, hangup, readHangup))
                HangupDerivation.ExplainLoneHangup(Table.Os, entry.Descriptor, ref input, ref hangup);
            var readiness = ReadinessRules.Normalize(armed, input, output, (m & _bits.Pri) != 0, error, hangup, readHangup);
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

    private protected override void WriteWake() => _system.Send(_port, 0, DescriptorTable.WakeData);

    private protected override void CloseKernel() => _system.Close(_port);
}
