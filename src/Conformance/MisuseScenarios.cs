using System.Diagnostics;
using System.Net.Sockets;
using IoMux.Interop;
using Microsoft.Win32.SafeHandles;
using static IoMux.Conformance.ScenarioContext;
using static IoMux.Readiness;

namespace IoMux.Conformance;

/// <summary>
/// H12b, N1, F6–F10, M7: the holes that scenarios restated from other projects' suites (mio, smol-rs/polling,
/// libuv, libevent) found in the contract. Each ends in one behaviour on every backend, and none may cost CPU:
/// where a misuse could make a kernel report forever, the scenario counts the backend's kernel waits.
/// </summary>
internal static class MisuseScenarios
{
    /// <summary>How many kernel waits a quiet wait may take: a few for a wake raced or a set rebuilt, never
    /// thousands (a stale level registration fires on every one).</summary>
    private const long QuietKernelWaits = 8;

    public static IEnumerable<Scenario> All =>
    [
        new("H12b", "never-connected TCP socket, every interest and mode",
            "never ReadHangup or Hangup (Linux's POLLHUP for TCP_CLOSE is not a hangup); where the kernel flags it, Readable (a read fails at once with ENOTCONN), elsewhere nothing", c =>
            {
                foreach (var interest in new[] { Interest.Readable, Interest.Writable, Interest.Readable | Interest.Writable })
                {
                    foreach (var mode in new[] { TriggerMode.Level, TriggerMode.Edge, TriggerMode.Oneshot })
                    {
                        var p = c.NewPoller();
                        var s = c.UnconnectedTcp();
                        p.Register(Fd(s), 1, interest, mode);
                        Watch(p, 1, ReadHangup | Hangup | Error, $"{interest}, {mode}");
                    }
                }
            }),
        new("N1", "Interest.None on a descriptor whose peer hung up (AF_UNIX pair closed, pipe writer closed)",
            "nothing is reported, and the waits sleep (no busy loop: epoll's unmaskable EPOLLHUP is disarmed); interest given back reports the hangup", c =>
            {
                var p = c.NewPoller();
                var (a, b) = c.UnixPair();
                var (r, w) = c.Pipe();
                var pair = p.Register(a, 1, Interest.Readable);
                p.Register(r, 2, Interest.None);
                c.Close(b);
                c.Close(w);
                Expect(p, 1, Readable | ReadHangup, None, "before pausing");
                pair.Modify(Interest.None);
                ExpectQuiet(p, "paused registrations of hung-up descriptors");
                pair.Modify(Interest.Readable);
                Expect(p, 1, Readable | ReadHangup, None, "interest given back");
            }),
        new("F6", "raw fd closed before it was deregistered while a dup keeps the file open; then dup2 brings the file back and it is registered again",
            "the deregistration does not throw; no event reaches the caller and the waits sleep (epoll keeps such a registration under the closed number: the backend drops it); registering the number again works and reports under the new token", c =>
            {
                var p = c.NewPoller();
                var (a, b) = c.UnixPair();
                var reg = p.Register(a, 1, Interest.Readable);
                int dup = c.Track(LibC.dup(a));
                c.Close(a);
                reg.Dispose();
                Write(b, 1);
                ExpectQuiet(p, "the stale registration of the dup's file");
                Check(LibC.dup2(dup, a) == a, "dup2 back onto the number");
                c.Track(a);
                p.Register(a, 2, Interest.Readable); // epoll: EEXIST taken over as a modify
                var seen = Expect(p, 2, Readable, None, "registered again");
                Check(seen.HasFlag(Readable), "the buffered byte is reported under the new token");
                foreach (var e in WaitOnce(p, TimeSpan.Zero))
                    Check(e.Token != 1, "an event carried the old token");
            }),
        new("F11", "DisposeBeforeClose, close, the number reused by another file that is then registered",
            "nothing is reported under the old token (epoll left the removal to the close); the new registration works; nothing stays registered", c =>
            {
                var p = c.NewPoller();
                var (a, b) = c.UnixPair();
                Write(b, 1);
                var old = p.Register(a, 1, Interest.Readable);
                Expect(p, 1, Readable, None, "before");
                old.DisposeBeforeClose();
                Check(!old.IsActive && p.RegistrationCount == 0, "deregistered");
                var (x, y) = c.UnixPair();
                Check(LibC.dup2(x, a) == a, "dup2 onto the closed number (closes the old file)");
                c.Close(x);
                ExpectQuiet(p, "after the close");
                var fresh = p.Register(a, 2, Interest.Readable);
                Write(y, 1);
                var events = WaitOnce(p, MustArrive);
                Check(events.All(e => e.Token != 1), "an event carried the old registration's token");
                Check(events.Any(e => e.Token == 2), "the new registration was not reported");
                fresh.DisposeBeforeClose();
                old.DisposeBeforeClose(); // idempotent
            }),
        new("F11b", "DisposeBeforeClose broken: a dup keeps the file open after the close, and its peer writes",
            "no event reaches the caller and the waits sleep (epoll still holds the dup's file description: the backend drops its events and rebuilds its set); other registrations keep working", c =>
            {
                var p = c.NewPoller();
                var (a, b) = c.UnixPair();
                var (x, y) = c.UnixPair();
                var reg = p.Register(a, 1, Interest.Readable);
                p.Register(x, 2, Interest.Readable);
                c.Track(LibC.dup(a));
                reg.DisposeBeforeClose();
                c.Close(a);
                Write(b, 1);
                ExpectQuiet(p, "the dup's file after DisposeBeforeClose");
                Write(y, 1);
                Expect(p, 2, Readable, None, "another registration");
            }),
        new("F7", "raw fd closed while registered, never deregistered",
            "nothing more is reported for it, no wait throws (select: EBADF for the whole set, handled as poll's POLLNVAL) and the waits sleep; other registrations keep working; deregistering later does not throw", c =>
            {
                var p = c.NewPoller();
                var (a, b) = c.UnixPair();
                var (x, y) = c.UnixPair();
                var reg = p.Register(a, 1, Interest.Readable);
                p.Register(x, 2, Interest.Readable);
                Write(b, 1);
                c.Close(a);
                ExpectQuiet(p, "after the close");
                Write(y, 1);
                Expect(p, 2, Readable, None, "another registration");
                reg.Dispose();
            }),
        new("F8", "dispose a registered System.Net.Sockets.Socket, before and after its registration",
            "Socket.Dispose returns at once in both orders (the registration does not pin the handle); nothing is reported for the disposed socket, even when its number is reused", c =>
            {
                foreach (bool socketFirst in new[] { true, false })
                {
                    var p = c.NewPoller();
                    var (local, peer) = c.TcpPair();
                    int number = Fd(local);
                    var reg = p.Register(local.SafeHandle, 1, Interest.Readable);
                    peer.Send("x"u8);
                    Expect(p, 1, Readable, None, "before disposal");
                    if (!socketFirst)
                        reg.Dispose();
                    var disposal = Task.Run(local.Dispose);
                    Check(disposal.Wait(MustArrive), $"Socket.Dispose hung ({(socketFirst ? "socket disposed first" : "after the registration")})");
                    // Whatever now holds the number must not be reported under the old token.
                    var (r, w) = c.Pipe();
                    if (LibC.fcntl(number, LibC.F_GETFD, 0) < 0)
                    {
                        Check(LibC.dup2(r, number) == number, "dup2 onto the disposed socket's number");
                        c.Track(number);
                    }
                    Write(w, 1);
                    ExpectNothing(p, 1, "after Socket.Dispose");
                    reg.Dispose();
                }
            }),
        new("F9", "SafeHandle closed while registered; its number reused by another file, which is registered",
            "no event reaches the old token (poll and select watch numbers, ports re-associate them: the closed handle is checked); the new registration of the number works", c =>
            {
                var p = c.NewPoller();
                var (r, w) = c.Pipe();
                c.Forget(r);
                var handle = new SafeFileHandle(r, ownsHandle: true);
                var old = p.Register(handle, 1, Interest.Readable);
                handle.Dispose();
                Check(LibC.fcntl(r, LibC.F_GETFD, 0) < 0, "closing the handle closes the descriptor at once");
                var (r2, w2) = c.Pipe();
                Check(LibC.dup2(r2, r) == r, "dup2 onto the closed number");
                c.Track(r);
                Write(w2, 1);
                ExpectNothing(p, 1, "another file under the old number");
                p.Register(r, 2, Interest.Readable);
                Expect(p, 2, Readable, None, "the new registration of the number");
                old.Dispose();
                Expect(p, 2, Readable, None, "still there after the old registration was disposed");
                GC.KeepAlive(w);
            }),
        new("F10", "register a System.Net.Sockets.Socket that is still blocking",
            "BlockingSocketException naming the descriptor, before the backend sees it: nothing registered; once Socket.Blocking is false it registers and reports", c =>
            {
                var p = c.NewPoller();
                var fresh = c.Own(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp)); // blocking, as made
                var refused = Throws<BlockingSocketException>(() => p.Register(fresh.SafeHandle, 1, Interest.Readable), "registering a blocking socket");
                Check(refused.Descriptor == Fd(fresh), $"the exception names fd {Fd(fresh)}, not {refused.Descriptor}");
                Check(p.RegistrationCount == 0, "a refused registration must leave nothing behind");
                var (local, peer) = c.TcpPair();
                p.Register(local.SafeHandle, 2, Interest.Readable);
                peer.Send("x"u8);
                Expect(p, 2, Readable, None, "a non-blocking socket registers and reports");
            }),
        new("M7", "modify changes the mode: oneshot to level, edge to level",
            "the new mode holds from the modify on (kqueue keeps a knote's EV_DISPATCH/EV_CLEAR on re-add: the backend replaces the filters)", c =>
            {
                var p = c.NewPoller();
                var (a, b) = c.UnixPair();
                var reg = p.Register(a, 1, Interest.Readable, TriggerMode.Oneshot);
                Write(b, 1);
                Expect(p, 1, Readable, None, "oneshot");
                reg.Modify(Interest.Readable, TriggerMode.Level);
                Expect(p, 1, Readable, None, "level, first");
                Expect(p, 1, Readable, None, "level, again: the byte is still there");
                reg.Modify(Interest.Readable, TriggerMode.Edge);
                Expect(p, 1, Readable, None, "edge, first");
                reg.Modify(Interest.Readable, TriggerMode.Level);
                Expect(p, 1, Readable, None, "level after edge, first");
                Expect(p, 1, Readable, None, "level after edge, again");
            }),
    ];

    /// <summary>Three waits of 30 ms report nothing, and the backend made only a few kernel waits for them.</summary>
    private static void ExpectQuiet(Poller p, string what)
    {
        var events = new PollEvent[16];
        long before = p.Counters.KernelWaits;
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < 3; i++)
        {
            int n = p.Wait(events, TimeSpan.FromMilliseconds(30));
            Check(n == 0, $"{what}: reported {events[0].Token}:{events[0].Readiness}");
        }
        long waits = p.Counters.KernelWaits - before;
        Check(waits <= QuietKernelWaits, $"{what}: {waits} kernel waits in {clock.ElapsedMilliseconds} ms for three quiet waits (a busy loop)");
        Check(clock.Elapsed >= TimeSpan.FromMilliseconds(85), $"{what}: three 30 ms waits returned after {clock.ElapsedMilliseconds} ms");
    }
}
