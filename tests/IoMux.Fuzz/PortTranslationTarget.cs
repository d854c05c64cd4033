using IoMux.Backends.EventPorts;
using IoMux.Interop;

namespace IoMux.Fuzz;

// The port-translation fuzz target: the event-ports backend over scripted port calls (FuzzTargets.Run dispatches
// to it; the checks are in BackendTranslation.cs).
internal sealed partial class FuzzTargets
{
    private void PortTranslation(byte[] data)
    {
        var input = new FuzzInput(data);
        var bits = input.Byte() % 2 == 0 ? PortPollBits.Illumos : PortPollBits.Solaris;
        using var backend = new EventPortsBackend(new ScriptedEventPorts(bits, input));
        Exercise(backend, input, supportsPriority: true, emulatedEdge: true);
    }
}

/// <summary>The event-port calls as a script: associations are accepted, and each port_getn returns records drawn
/// from the input (poll bits in any combination, PORT_SOURCE_FD mostly, portev_user naming registered slots,
/// stale slots, the wake, or anything), or fails with EINTR (nothing retrieved) or ETIME (some retrieved).
/// Like the kernel, it delivers an association at most once per port_getn: a port dissociates the descriptor
/// when it queues the event, so the same portev_user cannot come twice in one batch.</summary>
internal sealed class ScriptedEventPorts(PortPollBits bits, FuzzInput input) : IEventPortSystem
{
    private const int PortDescriptor = 1_000_001;
    private readonly List<ulong> _given = [];
    private readonly Dictionary<ulong, int> _descriptorOf = [];

    public PortPollBits Bits => bits;

    public OsCalls Os => OsCalls.Native; // the descriptors are this host's

    public int Create() => PortDescriptor;

    public int Associate(int port, int fd, int events, ulong user)
    {
        if (port != PortDescriptor)
            throw new PropertyViolationException($"port_associate on {port}, not the port");
        if (!_given.Contains(user))
            _given.Add(user);
        _descriptorOf[user] = fd;
        return 0;
    }

    public int Dissociate(int port, int fd) => 0;

    public int Send(int port, int events, ulong user) => 0;

    public void Close(int port)
    {
    }

    public int GetN(int port, Span<PortEvent> events, ref uint nget, TimeSpan? timeout)
    {
        byte first = input.Byte();
        if (first >= 0xF8)
            return Errno.EINTR; // nget left as passed, nothing written
        if (first >= 0xF0)
            return Errno.EBADF;
        int wanted = Math.Min(first % 9, events.Length);
        var delivered = new HashSet<ulong>();
        int count = 0;
        for (int i = 0; i < wanted; i++)
        {
            var record = Record();
            if (record.Source == PortSource.Fd && !delivered.Add(record.User))
                continue;
            events[count++] = record;
        }
        nget = (uint)count;
        return (first & 0x80) != 0 ? Errno.ETIME : 0;
    }

    private PortEvent Record()
    {
        byte shape = input.Byte();
        int mask = ((shape & 0x01) != 0 ? bits.In : 0) | ((shape & 0x02) != 0 ? bits.Out : 0)
            | ((shape & 0x04) != 0 ? bits.Pri : 0) | ((shape & 0x08) != 0 ? bits.Err : 0)
            | ((shape & 0x10) != 0 ? bits.Hup : 0) | ((shape & 0x20) != 0 ? bits.Nval : 0)
            | ((shape & 0x40) != 0 ? bits.RdHup : 0) | ((shape & 0x80) != 0 ? (int)input.UInt() : 0);
        byte source = input.Byte();
        ushort kind = (source % 8) switch { < 6 => PortSource.Fd, 6 => PortSource.User, _ => input.UShort() };
        ulong user = input.KernelData(_given);
        ulong target = _descriptorOf.TryGetValue(user, out int fd) ? (ulong)fd : input.Byte();
        return new PortEvent { Events = mask, Source = kind, Object = target, User = user };
    }
}
