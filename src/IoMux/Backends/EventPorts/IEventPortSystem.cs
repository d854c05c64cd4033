using System.Runtime.InteropServices;
using IoMux.Interop;

namespace IoMux.Backends.EventPorts;

/// <summary>port_event_t (illumos sys/port.h@12ef7bd6, port_get(3C)): 24 bytes on LP64 — events, source, padding, object, user.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct PortEvent
{
    /// <summary>portev_events: the poll bits that fired (PORT_SOURCE_FD) or the port_send events.</summary>
    public int Events;
    /// <summary>portev_source: PORT_SOURCE_FD, PORT_SOURCE_USER ...</summary>
    public ushort Source;
    /// <summary>portev_pad.</summary>
    public ushort Pad;
    /// <summary>portev_object: the file descriptor for PORT_SOURCE_FD.</summary>
    public ulong Object;
    /// <summary>portev_user: the value given to port_associate or port_send.</summary>
    public ulong User;
}

/// <summary>
/// The event-port system calls, as a seam: the backend's logic runs over the real calls on illumos and
/// Solaris, and over <c>EventPortModel</c> (tests/IoMux.Models) on Linux, where the whole conformance
/// suite runs against it. Calls return 0 or a negative errno, as the backend needs the errno anyway.
/// </summary>
internal interface IEventPortSystem
{
    /// <summary>The poll bits of this OS (illumos: POLLRDHUP 0x4000; Solaris has none: 0).</summary>
    PortPollBits Bits { get; }

    /// <summary>The descriptor checks (fstat, FIONREAD, getsockopt, getpeername) with this system's numbers, and its
    /// errno values: <see cref="OsCalls.Native"/> on illumos and Solaris, the model's own on a model.</summary>
    OsCalls Os { get; }

    /// <summary>port_create(3C): a port descriptor, or a negative errno.</summary>
    int Create();

    /// <summary>port_associate(port, PORT_SOURCE_FD, fd, events, user): 0 or the errno (EBADFD for a closed
    /// descriptor, EBADF for an invalid port: port_fd.c port_associate_fd).</summary>
    int Associate(int port, int fd, int events, ulong user);

    /// <summary>port_dissociate(port, PORT_SOURCE_FD, fd): 0 or the errno: ENOENT when not associated (its
    /// event already retrieved included), EBADFD for a closed descriptor, EBADF for an invalid port (port_fd.c).</summary>
    int Dissociate(int port, int fd);

    /// <summary>port_getn(3C): blocks until <paramref name="nget"/> events are available (at most
    /// <paramref name="events"/>.Length), or the timeout (null: infinite) passes. Returns 0, or the errno.
    /// With ETIME events may still have been retrieved and <paramref name="nget"/> says how many; with any other
    /// error (EINTR) nget is left as it was passed (illumos libc event_port.c).</summary>
    int GetN(int port, Span<PortEvent> events, ref uint nget, TimeSpan? timeout);

    /// <summary>port_send(3C): queues a PORT_SOURCE_USER event; 0 or the errno.</summary>
    int Send(int port, int events, ulong user);

    /// <summary>Closes the port.</summary>
    void Close(int port);
}

/// <summary>The poll(2) bits a port reports, per OS.</summary>
/// <param name="In">POLLIN.</param>
/// <param name="Pri">POLLPRI.</param>
/// <param name="Out">POLLOUT.</param>
/// <param name="Err">POLLERR.</param>
/// <param name="Hup">POLLHUP.</param>
/// <param name="Nval">POLLNVAL.</param>
/// <param name="RdHup">POLLRDHUP, or 0 where the OS has none (Solaris).</param>
internal readonly record struct PortPollBits(int In, int Pri, int Out, int Err, int Hup, int Nval, int RdHup)
{
    /// <summary>illumos: usr/src/uts/common/sys/poll.h@0ceaf38333191201001ea6ff4813aef604f0c792 (POLLIN 0x1, POLLPRI 0x2,
    /// POLLOUT 0x4, POLLERR 0x8, POLLHUP 0x10, POLLNVAL 0x20, POLLRDHUP 0x4000).</summary>
    public static PortPollBits Illumos => new(0x1, 0x2, 0x4, 0x8, 0x10, 0x20, OsAbi.PollRdHup(UnixFlavor.Illumos));

    /// <summary>Oracle Solaris: no POLLRDHUP (a Solaris 11.0 sys/poll.h, Arquivotheca/solaris11@766b42f8, has none; 11.4 has
    /// no public source, so this is an assumption: docs/research/kqueue-ports-constants.md).</summary>
    public static PortPollBits Solaris => Illumos with { RdHup = OsAbi.PollRdHup(UnixFlavor.Solaris) };
}

/// <summary>Event port constants: illumos usr/src/uts/common/sys/port.h@12ef7bd6596eedcaafd544ec675d6b72dfd15998.</summary>
internal static class PortSource
{
    /// <summary>PORT_SOURCE_USER: events queued by port_send.</summary>
    public const ushort User = 3;
    /// <summary>PORT_SOURCE_FD: a file descriptor associated with port_associate.</summary>
    public const ushort Fd = 4;
}
