using System.Net;
using System.Net.Sockets;
using IoMux.Interop;
using static IoMux.Conformance.ScenarioContext;
using static IoMux.Readiness;

namespace IoMux.Conformance;

/// <summary>H1–H12: hangups, half-closes and errors, each as Linux reports it and as IoMux normalises it.</summary>
internal static class HangupScenarios
{
    private const Interest Both = Interest.Readable | Interest.Writable;

    public static IEnumerable<Scenario> All =>
    [
        new("H1", "TCP peer shutdown(SHUT_WR), nothing buffered",
            "Readable+ReadHangup; never Hangup or Error; reads return 0", c =>
            {
                var p = c.NewPoller();
                var (local, peer) = c.TcpPair();
                p.Register(Fd(local), 1, Both);
                peer.Shutdown(SocketShutdown.Send);
                Expect(p, 1, Readable | ReadHangup, Hangup | Error, "after peer shutdown(SHUT_WR)");
                Check(Drain(Fd(local)) == (0, true), "a read after the read hangup must return 0");
            }),
        new("H1b", "TCP peer writes 3 bytes then shutdown(SHUT_WR)",
            "Readable; ReadHangup now or, on backends that derive it, after the data is drained (allowance D); all 3 bytes arrive", c =>
            {
                var p = c.NewPoller();
                var (local, peer) = c.TcpPair();
                p.Register(Fd(local), 1, Interest.Readable);
                peer.Send("abc"u8);
                peer.Shutdown(SocketShutdown.Send);
                var first = Expect(p, 1, Readable, Hangup | Error, "after data and FIN");
                var drained = Drain(Fd(local));
                Check(drained == (3, true), $"expected 3 bytes then end of stream, got {drained}");
                if (!first.HasFlag(ReadHangup))
                    Expect(p, 1, Readable | ReadHangup, Hangup | Error, "after draining the data");
            }),
        new("H2", "TCP peer close(), nothing unread on either side",
            "Readable+ReadHangup; never Error", c =>
            {
                var p = c.NewPoller();
                var (local, peer) = c.TcpPair();
                p.Register(Fd(local), 1, Both);
                peer.Close();
                Expect(p, 1, Readable | ReadHangup, Error, "after peer close()");
                Check(Drain(Fd(local)) == (0, true), "a read must return 0");
            }),
        new("H3", "TCP peer close() with unread data (the peer's kernel sends RST)",
            "Readable+Writable; Error, Hangup, ReadHangup allowed; the next read returns ECONNRESET (the poller consumed nothing)", c =>
            {
                var p = c.NewPoller();
                var (local, peer) = c.TcpPair();
                Write(Fd(local), 10); // left unread by the peer
                WaitForBytes(peer, 10);
                p.Register(Fd(local), 1, Both);
                peer.Close();
                Expect(p, 1, Readable | Writable, None, "after the reset");
                Span<byte> buffer = stackalloc byte[16];
                int n = Read(Fd(local), buffer);
                Check(n == -Errno.ECONNRESET, $"the read after a reset must fail with ECONNRESET, got {(n < 0 ? Errno.Name(-n) : n.ToString())}");
            }),
        new("H4", "AF_UNIX peer close()",
            "Readable+ReadHangup; Hangup allowed; never Error", c =>
            {
                var p = c.NewPoller();
                var (a, b) = c.UnixPair();
                p.Register(a, 1, Both);
                c.Close(b);
                Expect(p, 1, Readable | ReadHangup, Error, "after the AF_UNIX peer closed");
                Check(Drain(a) == (0, true), "a read must return 0");
            }),
        new("H5", "local shutdown(SHUT_WR)",
            "Writable only: never Readable, ReadHangup or Hangup (kqueue's write-side EV_EOF is not a peer hangup)", c =>
            {
                var p = c.NewPoller();
                var (local, _) = c.TcpPair();
                p.Register(Fd(local), 1, Both);
                local.Shutdown(SocketShutdown.Send);
                var seen = Watch(p, 1, Readable | ReadHangup | Hangup, "after local shutdown(SHUT_WR)");
                Check(seen.HasFlag(Writable), $"the socket stays writable-ready (writes fail with EPIPE); saw {seen}");
            }),
        new("H6", "local shutdown(SHUT_RD)",
            "Readable+ReadHangup; reads return 0", c =>
            {
                var p = c.NewPoller();
                var (local, _) = c.TcpPair();
                p.Register(Fd(local), 1, Both);
                local.Shutdown(SocketShutdown.Receive);
                Expect(p, 1, Readable | ReadHangup, Error, "after local shutdown(SHUT_RD)");
                Check(Drain(Fd(local)) == (0, true), "a read must return 0");
            }),
        new("H7", "local shutdown(SHUT_RDWR)",
            "Readable+ReadHangup; Hangup allowed", c =>
            {
                var p = c.NewPoller();
                var (local, _) = c.TcpPair();
                p.Register(Fd(local), 1, Both);
                local.Shutdown(SocketShutdown.Both);
                Expect(p, 1, Readable | ReadHangup, Error, "after local shutdown(SHUT_RDWR)");
            }),
        new("H8", "pipe reader; writer closed with nothing buffered (Linux says only POLLHUP)",
            "Readable+ReadHangup+Hangup; the read returns 0", c =>
            {
                var p = c.NewPoller();
                var (r, w) = c.Pipe();
                p.Register(r, 1, Interest.Readable);
                c.Close(w);
                Expect(p, 1, Readable | ReadHangup | Hangup, Error, "after the writer closed");
                Check(Drain(r) == (0, true), "a read must return 0");
            }),
        new("H9", "pipe reader; writer wrote 5 bytes and closed",
            "Readable; Hangup now or after the data is drained (allowance D); all 5 bytes, then 0", c =>
            {
                var p = c.NewPoller();
                var (r, w) = c.Pipe();
                p.Register(r, 1, Interest.Readable);
                Write(w, 5);
                c.Close(w);
                var first = Expect(p, 1, Readable, Error, "after data and close");
                Check(Drain(r) == (5, true), "expected 5 bytes then end of stream");
                if (!first.HasFlag(Hangup))
                    Expect(p, 1, Readable | ReadHangup | Hangup, Error, "after draining");
            }),
        new("H10", "pipe writer; reader closed",
            "Writable (Error allowed); never ReadHangup; the write fails with EPIPE", c =>
            {
                var p = c.NewPoller();
                var (r, w) = c.Pipe();
                p.Register(w, 1, Interest.Writable);
                c.Close(r);
                Expect(p, 1, Writable, ReadHangup, "after the reader closed");
                Span<byte> one = stackalloc byte[1];
                unsafe
                {
                    fixed (byte* b = one)
                        Check(LibC.write(w, b, 1) < 0 && Errno.Last == Errno.EPIPE, "the write must fail with EPIPE");
                }
            }),
        new("H11", "non-blocking connect to a closed loopback port",
            "Writable (Error, Hangup, Readable allowed); SO_ERROR still says ECONNREFUSED afterwards", c =>
            {
                var p = c.NewPoller();
                var s = c.UnconnectedTcp();
                try
                {
                    s.Connect(new IPEndPoint(IPAddress.Loopback, ClosedPort()));
                    NotApplicable("the connect succeeded: something listens on the probe port");
                }
                catch (SocketException e) when (e.SocketErrorCode is SocketError.WouldBlock or SocketError.InProgress or SocketError.IOPending)
                {
                }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionRefused)
                {
                    NotApplicable("the kernel refused the connect synchronously; nothing to poll");
                }
                p.Register(Fd(s), 1, Both);
                Expect(p, 1, Writable, None, "after the refused connect");
                int error = PendingSocketError(Fd(s));
                Check(error == Errno.ECONNREFUSED, $"SO_ERROR must still be ECONNREFUSED, got {Errno.Name(error)}");
            }),
        new("H12", "fresh TCP socket that was never connected (Linux: POLLOUT|POLLHUP)",
            "never ReadHangup or Hangup", c =>
            {
                var p = c.NewPoller();
                var s = c.UnconnectedTcp();
                p.Register(Fd(s), 1, Both);
                Watch(p, 1, ReadHangup | Hangup, "on an unconnected socket");
            }),
        new("X1", "idle connected TCP pair, then one byte",
            "Writable only while idle (no hangup when none happened); then Readable without any hangup or error", c =>
            {
                var p = c.NewPoller();
                var (local, peer) = c.TcpPair();
                p.Register(Fd(local), 1, Both);
                var seen = Watch(p, 1, Readable | ReadHangup | Hangup | Error, "while idle");
                Check(seen == Writable, $"an idle connected socket is writable and nothing else; saw {seen}");
                peer.Send("x"u8);
                Expect(p, 1, Readable | Writable, ReadHangup | Hangup | Error, "after one byte");
            }),
        new("P1", "TCP urgent (out-of-band) byte, Priority interest",
            "Priority where the kernel reports urgent data (epoll, poll, select, ports, kqueue on macOS, OpenBSD, DragonFly: EVFILT_EXCEPT); on kqueue without a filter for it (FreeBSD, NetBSD) Capabilities.NativePriority is false and registering Priority throws NotSupportedException naming the OS, never a silent drop", c =>
            {
                var p = c.NewPoller();
                var (local, peer) = c.TcpPair();
                if (!p.Capabilities.NativePriority)
                {
                    var refused = Throws<NotSupportedException>(() => p.Register(Fd(local), 1, Interest.Readable | Interest.Priority), "Priority without a kernel filter for it");
                    Check(refused.Message.Contains("EVFILT_EXCEPT"), $"the refusal must say what is missing: {refused.Message}");
                    Check(p.RegistrationCount == 0, "a refused registration leaves nothing behind");
                    var reg = p.Register(Fd(local), 1, Interest.Readable);
                    Throws<NotSupportedException>(() => reg.Modify(Interest.Readable | Interest.Priority), "modify to Priority");
                    return;
                }
                p.Register(Fd(local), 1, Interest.Readable | Interest.Priority);
                peer.Send("!"u8, SocketFlags.OutOfBand);
                Expect(p, 1, Priority, ReadHangup | Hangup | Error, "after an urgent byte");
            }),
    ];

    private static void WaitForBytes(Socket socket, int count)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (socket.Available < count && clock.Elapsed < MustArrive)
            Thread.Sleep(1);
    }

    private static unsafe int PendingSocketError(int fd)
    {
        int solSocket = OperatingSystem.IsLinux() ? 1 : 0xffff;
        int soError = OperatingSystem.IsLinux() ? 4 : 0x1007;
        int value = 0;
        uint length = sizeof(int);
        if (LibC.getsockopt(fd, solSocket, soError, &value, &length) != 0)
            throw Errno.Fail("getsockopt(SO_ERROR)");
        return value;
    }
}
