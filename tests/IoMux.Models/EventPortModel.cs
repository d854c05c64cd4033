using System.Diagnostics;
using System.Runtime.InteropServices;
using IoMux.Backends.EventPorts;
using IoMux.Interop;

namespace IoMux.Models;

/// <summary>
/// A model of illumos/Solaris event ports on real Linux descriptors, so that the event-ports backend runs
/// the whole conformance suite here. What it reproduces (each pinned by EventPortModelTests, citing the man
/// page): an association is one-shot — retrieving its event dissociates the descriptor; at most one event
/// per associated descriptor, carrying every fired poll bit; POLLHUP, POLLERR and POLLNVAL are reported even
/// when not requested; re-associating replaces the events and the user value; port_getn waits for nget
/// events (at most max), and when the timeout passes first it fails with ETIME, having retrieved what was
/// there (nget updated); port_send queues PORT_SOURCE_USER events; port_dissociate of a descriptor that is
/// not associated fails with ENOENT; a closed descriptor's association disappears. Readiness itself comes
/// from Linux poll(2), whose POLLRDHUP stands in for illumos's (reported only when the model plays illumos).
/// Errors are illumos's (illumos-gate port_fd.c, port_associate(3C)): a closed or invalid descriptor is EBADFD
/// for both port_associate and port_dissociate (EBADF means the port itself is invalid); port_getn fails with
/// ETIME having retrieved what was there (nget updated) but leaves nget untouched on EINTR (libc event_port.c).
/// Oracle Solaris 11.4 has no public source: the Solaris profile is illumos without POLLRDHUP (a Solaris 11.0
/// sys/poll.h has none). Every refusal that is not about a closed or unassociated descriptor is recorded in <see cref="Refused"/>.
/// </summary>
internal sealed unsafe partial class EventPortModel : IEventPortSystem
{
    private const short LinuxPollRdHup = 0x2000;

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Fd;
        public short Events;
        public short ReturnedEvents;
    }

    [LibraryImport("libc", SetLastError = true)] private static partial int poll(PollFd* fds, nuint count, int timeoutMs);

    private sealed class Port(int readEnd, int writeEnd)
    {
        public readonly int ReadEnd = readEnd, WriteEnd = writeEnd; // a pipe: the port's number, and its doorbell
        public readonly Dictionary<int, (int Events, ulong User)> Associations = new();
        public readonly Queue<(int Events, ulong User)> UserEvents = new();
    }

    private readonly object _gate = new();
    private readonly Dictionary<int, Port> _ports = new();

    /// <summary>A model of <paramref name="target"/>'s event ports (illumos: POLLRDHUP exists; Solaris: it does not), for a
    /// backend configured with <paramref name="backendBits"/> (the backend's own table for that OS: handed over, never read).</summary>
    public EventPortModel(TargetAbi target, PortPollBits backendBits)
    {
        Target = target;
        Bits = backendBits;
        Os = new ModelOsCalls(target);
    }

    /// <summary>The OS played, in the model's own numbers.</summary>
    public TargetAbi Target { get; }

    /// <inheritdoc />
    public PortPollBits Bits { get; }

    /// <inheritdoc />
    public OsCalls Os { get; }

    private int RdHup => Target.PollRdHup;

    /// <summary>Calls the modelled kernel refused for a reason other than the caller's descriptor being closed or
    /// not associated (an invalid port, in any of the four calls; nothing else is refused by the model).</summary>
    public static System.Collections.Concurrent.ConcurrentQueue<string> Refused { get; } = new();

    /// <inheritdoc />
    public int Create()
    {
        try
        {
            LibC.CreateNonBlockingPipe(out int r, out int w);
            lock (_gate)
                _ports[r] = new Port(r, w);
            return r;
        }
        catch (PosixException e)
        {
            return -e.Errno;
        }
    }

    private Port? Find(int port) => _ports.GetValueOrDefault(port);

    /// <summary>EBADF for an invalid port, recorded: every port call checks its port first (port_associate,
    /// port_dissociate, port_send and port_getn all answer EBADF when "the port identifier is not valid",
    /// port_associate(3C), port_send(3C), port_get(3C)), and a backend that names a bad port is wrong whichever call it is.</summary>
    private static int BadPort(string call, int port)
    {
        Refused.Enqueue($"{call} port {port}: EBADF");
        return 9; // EBADF, Version 7's number everywhere
    }

    /// <inheritdoc />
    public int Associate(int port, int fd, int events, ulong user)
    {
        if (LibC.fcntl(fd, LinuxF_GETFD, 0) < 0)
            return Target.Errnos.Ebadfd; // port_associate_fd: "if ((fp = getf(fd)) == NULL) return (EBADFD)"
        lock (_gate)
        {
            if (Find(port) is not { } p)
                return BadPort("port_associate", port);
            p.Associations[fd] = (events, user);
            Ring(p);
            return 0;
        }
    }

    /// <inheritdoc />
    public int Dissociate(int port, int fd)
    {
        lock (_gate)
        {
            if (Find(port) is not { } p)
                return BadPort("port_dissociate", port);
            if (p.Associations.Remove(fd))
                return 0;
            return LibC.fcntl(fd, LinuxF_GETFD, 0) < 0 ? Target.Errnos.Ebadfd : Target.Errnos.Enoent;
        }
    }

    /// <inheritdoc />
    public int Send(int port, int events, ulong user)
    {
        lock (_gate)
        {
            if (Find(port) is not { } p)
                return BadPort("port_send", port);
            p.UserEvents.Enqueue((events, user));
            Ring(p);
            return 0;
        }
    }

    private static void Ring(Port p)
    {
        byte one = 1;
        LibC.write(p.WriteEnd, &one, 1);
    }

    /// <inheritdoc />
    public int GetN(int port, Span<PortEvent> events, ref uint nget, TimeSpan? timeout)
    {
        uint wanted = Math.Max(1, Math.Min(nget, (uint)events.Length));
        long deadline = timeout is { } t ? Stopwatch.GetTimestamp() + (long)(t.TotalSeconds * Stopwatch.Frequency) : long.MaxValue;
        int count = 0;
        var set = new List<(int Fd, int Events, ulong User)>();
        while (true)
        {
            Port p;
            lock (_gate)
            {
                if (Find(port) is not { } found)
                    return BadPort("port_getn", port);
                p = found;
                Drain(p);
                while (count < events.Length && p.UserEvents.TryDequeue(out var user))
                    events[count++] = new PortEvent { Events = user.Events, Source = PortAbi.SourceUser, User = user.User };
                set.Clear();
                foreach (var (fd, a) in p.Associations)
                    set.Add((fd, a.Events, a.User));
            }
            count = Deliver(p, set, events, count, timeoutMs: 0);
            if (count >= wanted)
            {
                nget = (uint)count;
                return 0;
            }
            long left = deadline - Stopwatch.GetTimestamp();
            if (left <= 0)
            {
                nget = (uint)count;
                return Target.Errnos.Etime; // "the timeout elapsed before nget events": what was retrieved stays in list
            }
            // Block until a descriptor or the doorbell (associate, send) fires, then look again.
            int ms = deadline == long.MaxValue ? -1 : (int)Math.Min(int.MaxValue, (left * 1000 + Stopwatch.Frequency - 1) / Stopwatch.Frequency);
            if (Block(p, set, ms) < 0 && Marshal.GetLastPInvokeError() == 4 /* Linux EINTR */)
            {
                // libc's port_getn sets errno and returns -1 without touching *nget for every error but ETIME.
                // Events retrieved before the signal stay in the list here (the model retrieved them itself); a
                // real port would not have retrieved them, so the count given back is the caller's own.
                return Target.Errnos.Eintr;
            }
        }
    }

    /// <summary>Polls the associations once; every one that fired becomes an event and is dissociated.</summary>
    private int Deliver(Port p, List<(int Fd, int Events, ulong User)> set, Span<PortEvent> events, int count, int timeoutMs)
    {
        if (set.Count == 0 || count >= events.Length)
            return count;
        var fds = new PollFd[set.Count];
        for (int i = 0; i < set.Count; i++)
            fds[i] = new PollFd { Fd = set[i].Fd, Events = ToLinux(set[i].Events) };
        fixed (PollFd* f = fds)
        {
            if (poll(f, (nuint)fds.Length, timeoutMs) <= 0)
                return count;
        }
        lock (_gate)
        {
            for (int i = 0; i < fds.Length && count < events.Length; i++)
            {
                short r = fds[i].ReturnedEvents;
                if (r == 0)
                    continue;
                // Associated meanwhile with other values, or dissociated: that association did not fire.
                if (!p.Associations.TryGetValue(set[i].Fd, out var now) || now != (set[i].Events, set[i].User))
                    continue;
                p.Associations.Remove(set[i].Fd); // one-shot: the event dissociates the descriptor
                if ((r & PortAbi.PollNval) != 0)
                    continue; // POLLNVAL: closed; a closed descriptor's association just disappears
                events[count++] = new PortEvent { Events = FromLinux(set[i].Fd, r, set[i].Events), Source = PortAbi.SourceFd, Object = (ulong)set[i].Fd, User = set[i].User };
            }
        }
        return count;
    }

    private int Block(Port p, List<(int Fd, int Events, ulong User)> set, int timeoutMs)
    {
        var fds = new PollFd[set.Count + 1];
        fds[0] = new PollFd { Fd = p.ReadEnd, Events = 1 };
        for (int i = 0; i < set.Count; i++)
            fds[i + 1] = new PollFd { Fd = set[i].Fd, Events = ToLinux(set[i].Events) };
        fixed (PollFd* f = fds)
            return poll(f, (nuint)fds.Length, timeoutMs);
    }

    private static void Drain(Port p)
    {
        byte* buffer = stackalloc byte[64];
        while (LibC.read(p.ReadEnd, buffer, 64) > 0)
        {
        }
    }

    // illumos and Linux share the low poll bits (PortAbi); only POLLRDHUP differs (0x4000 vs 0x2000). A bit the
    // target does not define is not passed on: Linux would report for it what the target's kernel never would.
    private short ToLinux(int events) => (short)((events & LowBits) | ((RdHup != 0 && (events & RdHup) != 0) ? LinuxPollRdHup : 0));

    private int FromLinux(int fd, short returned, int requested)
    {
        // illumos so_poll: "In sockets the errors are represented as input/output events": while a socket has a
        // pending error and input or output was asked for, it reports (POLLIN|POLLRDNORM|POLLOUT) & events and nothing
        // else: no POLLERR, POLLHUP or POLLRDHUP (illumos-gate usr/src/uts/common/fs/sockfs/sockcommon_sops.c @0250c53a
        // so_poll); asked for neither, it goes on to the other checks. Linux's POLLERR on a socket is that pending error.
        if ((returned & PortAbi.PollErr) != 0 && (requested & (PortAbi.PollIn | PortAbi.PollOut)) != 0 && IsSocket(fd))
            return requested & (PortAbi.PollIn | PortAbi.PollOut);
        int events = returned & LowBits;
        if (RdHup != 0 && (returned & LinuxPollRdHup) != 0 && (requested & RdHup) != 0)
            events |= RdHup;
        return events;
    }

    private const int LowBits = PortAbi.PollIn | PortAbi.PollPri | PortAbi.PollOut | PortAbi.PollErr | PortAbi.PollHup | PortAbi.PollNval;
    private const int LinuxF_GETFD = 1;

    private static bool IsSocket(int fd) => TargetAbi.IsLinuxSocket(fd);

    /// <inheritdoc />
    public void Close(int port)
    {
        lock (_gate)
        {
            if (!_ports.Remove(port, out var p))
                return;
            LibC.CloseQuietly(p.ReadEnd);
            LibC.CloseQuietly(p.WriteEnd);
        }
    }
}
