using static IoMux.Conformance.ScenarioContext;
using static IoMux.Readiness;

namespace IoMux.Conformance;

/// <summary>M1–M6 and the mode rows added to them: level, edge and oneshot behave alike on every backend.</summary>
internal static class ModeScenarios
{
    private const Interest Both = Interest.Readable | Interest.Writable;

    public static IEnumerable<Scenario> All =>
    [
        new("M1", "oneshot with Readable|Writable: after the first event, new data",
            "the first event disarms the whole registration (both directions): nothing until Rearm, then Readable", c =>
            {
                var p = c.NewPoller();
                var (local, peer) = c.TcpPair();
                var reg = p.Register(Fd(local), 1, Both, TriggerMode.Oneshot);
                Expect(p, 1, Writable, None, "first oneshot event");
                peer.Send("data"u8);
                ExpectNothing(p, 1, "oneshot registration after its event");
                reg.Rearm();
                Expect(p, 1, Readable | Writable, None, "after re-arming");
                ExpectNothing(p, 1, "after the re-armed event");
            }),
        new("M2", "edge: data arrives, more arrives before any drain",
            "an extra event before the drain is allowed (allowance E); draining to would-block gets every byte; the next arrival is reported", c =>
            {
                var p = c.NewPoller();
                var (local, peer) = c.TcpPair();
                var reg = p.Register(Fd(local), 1, Interest.Readable, TriggerMode.Edge);
                peer.Send("abc"u8);
                Expect(p, 1, Readable, None, "first arrival");
                peer.Send("defg"u8);
                WaitOnce(p, Quiet); // allowance E: an event may or may not come here
                int total = DrainWithHelper(reg);
                Check(total == 7, $"draining must return all 7 bytes, got {total}");
                peer.Send("h"u8);
                Expect(p, 1, Readable, None, "arrival after the drain");
            }),
        new("M3", "edge: data arrives, is not drained, nothing new arrives",
            "one event, then none", c =>
            {
                var p = c.NewPoller();
                var (local, peer) = c.TcpPair();
                p.Register(Fd(local), 1, Interest.Readable, TriggerMode.Edge);
                peer.Send("abc"u8);
                Expect(p, 1, Readable, None, "first arrival");
                ExpectNothing(p, 1, "edge registration with no new data");
            }),
        new("M4", "level: partial read",
            "reported again while data remains", c =>
            {
                var p = c.NewPoller();
                var (local, peer) = c.TcpPair();
                p.Register(Fd(local), 1, Interest.Readable);
                peer.Send("0123456789"u8);
                Expect(p, 1, Readable, None, "arrival");
                Span<byte> three = stackalloc byte[3];
                Check(Read(Fd(local), three) == 3, "partial read");
                Expect(p, 1, Readable, None, "data remains");
            }),
        new("M5", "level: data left unread across waits (event ports emulate this by re-associating)",
            "reported on every wait, with no re-arm call", c =>
            {
                var p = c.NewPoller();
                var (local, peer) = c.TcpPair();
                p.Register(Fd(local), 1, Interest.Readable);
                peer.Send("x"u8);
                for (int i = 0; i < 3; i++)
                    Expect(p, 1, Readable, None, $"wait {i + 1}");
            }),
        new("M6", "modify while another thread waits",
            "takes effect in the ongoing wait or the next one: the waiter sees the new interest", c =>
            {
                var p = c.NewPoller();
                var (local, _) = c.TcpPair();
                var reg = p.Register(Fd(local), 1, Interest.Readable);
                var waiter = Task.Run(() => Expect(p, 1, Writable, None, "waiter after modify"));
                Thread.Sleep(50);
                reg.Modify(Both);
                Check(waiter.Wait(MustArrive + MustArrive), "the waiting thread never saw the modification");
            }),
        new("X3", "edge: readiness re-armed after would-block (mio's readiness_is_reregistered_after_would_block)",
            "after the consumer drains to would-block through the registration's helper, each new arrival is reported", c =>
            {
                var p = c.NewPoller();
                var (local, peer) = c.TcpPair();
                var reg = p.Register(Fd(local), 1, Interest.Readable, TriggerMode.Edge);
                for (int round = 0; round < 3; round++)
                {
                    peer.Send("ping"u8);
                    Expect(p, 1, Readable, None, $"round {round}");
                    Check(DrainWithHelper(reg) == 4, "drain");
                }
            }),
        new("X3b", "edge: consumer does its own I/O and calls NotifyWouldBlock",
            "each new arrival is reported", c =>
            {
                var p = c.NewPoller();
                var (a, b) = c.UnixPair();
                var reg = p.Register(a, 1, Interest.Readable, TriggerMode.Edge);
                for (int round = 0; round < 3; round++)
                {
                    Write(b, 2);
                    Expect(p, 1, Readable, None, $"round {round}");
                    Check(Drain(a) == (2, false), "drain");
                    reg.NotifyWouldBlock(Interest.Readable);
                }
            }),
        new("X3c", "edge writable: write until would-block, peer drains",
            "Writable is reported again once the buffer has room", c =>
            {
                var p = c.NewPoller();
                var (a, b) = c.UnixPair();
                var reg = p.Register(a, 1, Interest.Writable, TriggerMode.Edge);
                Expect(p, 1, Writable, None, "initially writable");
                var chunk = new byte[4096];
                int written = 0;
                while (reg.Write(chunk, out int n) == IoOutcome.Completed)
                    written += n;
                ExpectNothing(p, 1, "buffer full");
                Check(Drain(b).Bytes == written, "the peer reads everything written");
                Expect(p, 1, Writable, None, "room again");
            }),
        new("X4", "readable and writable at once",
            "exactly one event for the registration, carrying both directions", c =>
            {
                var p = c.NewPoller();
                var (local, peer) = c.TcpPair();
                p.Register(Fd(local), 1, Both);
                peer.Send("x"u8);
                Expect(p, 1, Readable | Writable, None, "both ready"); // Expect also checks one event per wait
            }),
        new("X7", "the same descriptor in two pollers (S1)",
            "both pollers report it", c =>
            {
                var p1 = c.NewPoller();
                var p2 = c.NewPoller();
                var (a, b) = c.UnixPair();
                p1.Register(a, 1, Interest.Readable);
                p2.Register(a, 2, Interest.Readable);
                Write(b, 1);
                Expect(p1, 1, Readable, None, "first poller");
                Expect(p2, 2, Readable, None, "second poller");
            }),
    ];

    private static int DrainWithHelper(Registration reg)
    {
        Span<byte> buffer = stackalloc byte[4096];
        int total = 0;
        while (true)
        {
            var outcome = reg.Read(buffer, out int n);
            if (outcome != IoOutcome.Completed)
                return total;
            total += n;
        }
    }
}
