// docs/MODES.md quotes this file: the three trigger modes on one socket pair, and what each promises.
using System.Net.Sockets;
using IoMux;

using var poller = PollerFactory.Create();
var events = new PollEvent[4];
var (left, right) = SocketPair();
using (left)
using (right)
{
    // Level: reported on every wait while data is buffered.
    using (var level = poller.Register(right.SafeHandle, token: 1, Interest.Readable, TriggerMode.Level))
    {
        left.Send(new byte[10]);
        Console.WriteLine($"level: {poller.Wait(events, TimeSpan.Zero)} then {poller.Wait(events, TimeSpan.Zero)}"); // 1 then 1
        Drain(level);
    }

    // Edge: reported once per arrival; drain to would-block (Read does, and re-arms on every backend).
    using (var edge = poller.Register(right.SafeHandle, token: 2, Interest.Readable, TriggerMode.Edge))
    {
        left.Send(new byte[10]);
        int first = poller.Wait(events, TimeSpan.Zero);
        int again = poller.Wait(events, TimeSpan.Zero);   // 0: not reported again until drained
        Drain(edge);
        Console.WriteLine($"edge: {first} then {again}");
    }

    // Oneshot: reported once, then the whole registration is disarmed until Rearm.
    using (var oneshot = poller.Register(right.SafeHandle, token: 3, Interest.Readable, TriggerMode.Oneshot))
    {
        left.Send(new byte[10]);
        int first = poller.Wait(events, TimeSpan.Zero);
        int disarmed = poller.Wait(events, TimeSpan.Zero); // 0, data or not
        oneshot.Rearm();
        int rearmed = poller.Wait(events, TimeSpan.Zero);  // 1: still readable
        Console.WriteLine($"oneshot: {first}, {disarmed}, after Rearm {rearmed}");
        Drain(oneshot);
    }
}

static void Drain(Registration registration)
{
    var buffer = new byte[64];
    while (registration.Read(buffer, out _) == IoOutcome.Completed)
    {
    }
}

static (Socket, Socket) SocketPair()
{
    using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    listener.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
    listener.Listen(1);
    var left = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    left.Connect(listener.LocalEndPoint!);
    var right = listener.Accept();
    right.Blocking = false;
    return (left, right);
}
