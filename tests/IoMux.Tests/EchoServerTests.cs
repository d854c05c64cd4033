using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using IoMux.Samples;

namespace IoMux.Tests;

/// <summary>The README's echo server, end to end on loopback, on every backend (and over the kqueue and ports models): several clients push more
/// than the socket buffers hold, so back-pressure and edge re-arming are exercised.</summary>
public sealed class EchoServerTests
{
    [TestCase("epoll")]
    [TestCase("poll")]
    [TestCase("select")]
    [TestCase("poll-derived")]
    [TestCase("kqueue-model-freebsd-14")]
    [TestCase("kqueue-model-macos")]
    [TestCase("ports-model")]
    [CancelAfter(60_000)]
    public async Task EchoesEveryByteToConcurrentClients(string backend, CancellationToken token)
    {
        var provider = Models.ModelTargets.WithNative.Single(t => t.Name == backend);
        if (provider.UnsupportedReason() is { } reason)
            Assert.Ignore(reason);
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(64);
        var endpoint = (IPEndPoint)listener.LocalEndPoint!;
        using var poller = new Poller(provider.Create());
        using var stop = new CancellationTokenSource();
        var server = Task.Factory.StartNew(() => EchoServer.Serve(listener, poller, stop.Token), TaskCreationOptions.LongRunning);

        const int clients = 4, bytesPerClient = 2 << 20;
        var runs = Enumerable.Range(0, clients).Select(async i =>
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(endpoint, token);
            var payload = RandomNumberGenerator.GetBytes(bytesPerClient);
            var send = Task.Run(async () =>
            {
                for (int offset = 0; offset < payload.Length;)
                    offset += await socket.SendAsync(payload.AsMemory(offset, Math.Min(64 << 10, payload.Length - offset)), token);
                socket.Shutdown(SocketShutdown.Send);
            }, token);
            var received = new MemoryStream();
            var buffer = new byte[64 << 10];
            int n;
            while ((n = await socket.ReceiveAsync(buffer, token)) > 0)
                received.Write(buffer, 0, n);
            await send;
            return (Sent: SHA256.HashData(payload), Received: SHA256.HashData(received.ToArray()), Length: received.Length);
        }).ToArray();

        foreach (var result in await Task.WhenAll(runs).WaitAsync(token))
        {
            Assert.That(result.Length, Is.EqualTo(bytesPerClient));
            Assert.That(result.Received, Is.EqualTo(result.Sent));
        }
        stop.Cancel();
        Assert.That(server.Wait(TimeSpan.FromSeconds(10)), Is.True, "the server did not stop when asked");
        Assert.That(poller.RegistrationCount, Is.EqualTo(0), "every client registration was released");
    }
}
