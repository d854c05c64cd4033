using System.Runtime.InteropServices;
using IoMux.Interop;

namespace IoMux.Backends.EventPorts;

/// <summary>The real event-port calls of illumos and Solaris libc.</summary>
internal sealed unsafe partial class NativeEventPorts : IEventPortSystem
{
    [LibraryImport("libc", SetLastError = true)] private static partial int port_create();
    [LibraryImport("libc", SetLastError = true)] private static partial int port_associate(int port, int source, nuint obj, int events, void* user);
    [LibraryImport("libc", SetLastError = true)] private static partial int port_dissociate(int port, int source, nuint obj);
    [LibraryImport("libc", SetLastError = true)] private static partial int port_getn(int port, PortEvent* list, uint max, uint* nget, Timespec* timeout);
    [LibraryImport("libc", SetLastError = true)] private static partial int port_send(int port, int events, void* user);

    /// <summary>illumos defines POLLRDHUP; Oracle Solaris does not (<see cref="OsAbi.PollRdHup"/>, the table the poll
    /// backend reads too; which one this is: <see cref="Platform.Classify"/>). An illumos whose kernel does not report
    /// the bit (probed: <see cref="OsAbi.ReadHangupBit"/>) is treated as Solaris: read hangup derived.</summary>
    public OsCalls Os => OsCalls.Native;

    public PortPollBits Bits { get; } = Platform.Flavor == UnixFlavor.Solaris || OsAbi.ReadHangupBit == 0 ? PortPollBits.Solaris : PortPollBits.Illumos;

    public int Create()
    {
        int port = port_create();
        return port >= 0 ? port : -Errno.Last;
    }

    public int Associate(int port, int fd, int events, ulong user) =>
        port_associate(port, PortSource.Fd, (nuint)fd, events, (void*)user) == 0 ? 0 : Errno.Last;

    public int Dissociate(int port, int fd) =>
        port_dissociate(port, PortSource.Fd, (nuint)fd) == 0 ? 0 : Errno.Last;

    public int GetN(int port, Span<PortEvent> events, ref uint nget, TimeSpan? timeout)
    {
        fixed (PortEvent* list = events)
        fixed (uint* n = &nget)
        {
            int rc;
            if (timeout is { } t)
            {
                var ts = Timespec.From(t);
                rc = port_getn(port, list, (uint)events.Length, n, &ts);
            }
            else
            {
                rc = port_getn(port, list, (uint)events.Length, n, null);
            }
            return rc == 0 ? 0 : Errno.Last;
        }
    }

    public int Send(int port, int events, ulong user) => port_send(port, events, (void*)user) == 0 ? 0 : Errno.Last;

    public void Close(int port) => LibC.CloseQuietly(port);
}
