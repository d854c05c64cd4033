using System.Net.Sockets;
using Microsoft.Win32.SafeHandles;

namespace IoMux.Samples;

/// <summary>An echo server on one IoMux poller: edge-triggered, non-blocking, with back-pressure (a client
/// whose echo cannot be written is not read until it drains). The README shows this file.</summary>
public static class EchoServer
{
    private sealed class Client(SafeFileHandle handle)
    {
        public SafeFileHandle Handle { get; } = handle;
        public Registration Registration { get; set; } = null!;
        public byte[] Pending { get; } = new byte[64 * 1024];
        public int PendingStart, PendingEnd;
    }

    public static void Serve(Socket listener, Poller poller, CancellationToken stop)
    {
        listener.Blocking = false;
        using var accepting = poller.Register(listener.SafeHandle, token: 0, Interest.Readable, TriggerMode.Edge);
        var clients = new Dictionary<ulong, Client>();
        ulong nextToken = 1;
        var events = new PollEvent[256];
        using var wakeOnStop = stop.Register(poller.Wake);
        while (!stop.IsCancellationRequested)
        {
            int n = poller.Wait(events);
            foreach (var e in events.AsSpan(0, n))
            {
                if (e.Token == 0)
                {
                    while (accepting.Accept(out var handle) == IoOutcome.Completed)
                    {
                        var client = new Client(handle!);
                        client.Registration = poller.Register(client.Handle, nextToken, Interest.Readable | Interest.Writable, TriggerMode.Edge);
                        clients[nextToken++] = client;
                    }
                }
                else if (clients.TryGetValue(e.Token, out var client) && !Pump(client))
                {
                    clients.Remove(e.Token);
                    client.Registration.Dispose(); // deregister first, then close
                    client.Handle.Dispose();
                }
            }
        }
        foreach (var client in clients.Values)
        {
            client.Registration.Dispose();
            client.Handle.Dispose();
        }
    }

    /// <summary>Moves bytes until both directions would block. Returns false when the client is done.</summary>
    private static bool Pump(Client c)
    {
        while (true)
        {
            if (c.PendingStart < c.PendingEnd)
            {
                switch (c.Registration.Write(c.Pending.AsSpan(c.PendingStart, c.PendingEnd - c.PendingStart), out int written))
                {
                    case IoOutcome.WouldBlock: return true; // the edge registration reports Writable when there is room again
                    case IoOutcome.Completed: c.PendingStart += written; continue;
                    default: return false; // BrokenPipe, ConnectionReset: the client is gone
                }
            }
            c.PendingStart = c.PendingEnd = 0;
            switch (c.Registration.Read(c.Pending, out int read))
            {
                case IoOutcome.WouldBlock: return true;
                case IoOutcome.Completed: c.PendingEnd = read; break;
                default: return false; // EndOfStream, ConnectionReset
            }
        }
    }
}
