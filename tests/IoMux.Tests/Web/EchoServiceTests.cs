using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using IoMux.Web.Echo;

namespace IoMux.Tests.Web;

/// <summary>The loop-per-thread echo server: concurrent clients pushing more than the socket buffers hold get
/// every byte back, on every backend that runs here.</summary>
[TestFixture("epoll")]
[TestFixture("poll")]
[TestFixture("select")]
public sealed class EchoServiceTests(string backend)
{
    [Test, CancelAfter(60_000)]
    public async Task ConcurrentClientsGetEveryByteBack()
    {
        using var echo = new EchoService(new IPEndPoint(IPAddress.Loopback, 0), threads: 2, backend);
        var runs = Enumerable.Range(0, 16).Select(async i =>
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(echo.Endpoint);
            var payload = new byte[1 << 20];
            new Random(i).NextBytes(payload);
            var sending = Task.Run(async () =>
            {
                for (int at = 0; at < payload.Length;)
                    at += await socket.SendAsync(payload.AsMemory(at), SocketFlags.None);
            });
            var received = new byte[payload.Length];
            for (int at = 0; at < received.Length;)
            {
                int n = await socket.ReceiveAsync(received.AsMemory(at), SocketFlags.None);
                Assert.That(n, Is.GreaterThan(0), "the server closed early");
                at += n;
            }
            await sending;
            return SHA256.HashData(received).SequenceEqual(SHA256.HashData(payload));
        });
        Assert.That(await Task.WhenAll(runs), Is.All.True);
    }
}
