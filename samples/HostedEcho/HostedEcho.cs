using System.Net;
using System.Net.Sockets;
using IoMux.Loop;
using Microsoft.Win32.SafeHandles;

namespace IoMux.Samples;

/// <summary>An echo server on one event loop, level-triggered, one read per readiness, with back-pressure (a
/// client whose echo is not all written is not read until it is). Everything it opens is closed by the loop's
/// exit source, on the loop thread, so a host that stops the loop leaves no descriptor behind.</summary>
public static class HostedEcho
{
    private sealed class Client(SafeFileHandle handle)
    {
        public SafeFileHandle Handle { get; } = handle;
        public IoSource Source { get; set; } = null!;
        public byte[] Pending { get; } = new byte[16 * 1024];
        public int Start, End;
    }

    /// <summary>A listening TCP socket on <paramref name="endpoint"/>, non-blocking (as registration requires).</summary>
    public static Socket Listen(IPEndPoint endpoint)
    {
        var listener = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            listener.Bind(endpoint);
            listener.Listen();
            listener.Blocking = false;
            return listener;
        }
        catch
        {
            listener.Dispose();
            throw;
        }
    }

    /// <summary>Serves echo on <paramref name="listener"/> from <paramref name="loop"/>; the listener and every
    /// client are closed when the loop exits.</summary>
    public static void Serve(EventLoop loop, Socket listener)
    {
        var clients = new HashSet<Client>();
        var accepting = loop.AddIo(listener.SafeHandle, Interest.Readable, (source, _) =>
        {
            while (source.Registration!.Accept(out var handle, out EndPoint? peer) == IoOutcome.Completed)
            {
                var client = new Client(handle!);
                client.Source = loop.AddIo(client.Handle, Interest.Readable, (_, _) => Pump(client, clients), description: $"echo {peer}");
                clients.Add(client);
            }
        }, description: "accept");
        loop.AddExit(_ =>
        {
            accepting.Dispose();
            listener.Dispose();
            foreach (var client in clients.ToList())
                Close(client, clients);
        });
    }

    private static void Pump(Client c, HashSet<Client> clients)
    {
        var registration = c.Source.Registration!;
        if (c.Start == c.End)
        {
            switch (registration.Read(c.Pending, out int read))
            {
                case IoOutcome.WouldBlock: return;
                case IoOutcome.Completed: (c.Start, c.End) = (0, read); break;
                default: Close(c, clients); return; // EndOfStream, ConnectionReset
            }
        }
        switch (registration.Write(c.Pending.AsSpan(c.Start, c.End - c.Start), out int written))
        {
            case IoOutcome.Completed: c.Start += written; break;
            case IoOutcome.WouldBlock: break;
            default: Close(c, clients); return; // BrokenPipe, ConnectionReset
        }
        // Back-pressure: while an echo is unsent, wait for room instead of reading more.
        var wanted = c.Start < c.End ? Interest.Writable : Interest.Readable;
        if (c.Source.Interest != wanted)
            c.Source.SetInterest(wanted);
    }

    private static void Close(Client c, HashSet<Client> clients)
    {
        clients.Remove(c);
        c.Source.Dispose(); // deregister first, then close
        c.Handle.Dispose();
    }
}
